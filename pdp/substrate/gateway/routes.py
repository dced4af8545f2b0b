"""A deployment's inference endpoint as Gateway API objects, rendered from the deployment and its
tenant's SLA tier (pure).

Per deployment, in the tenant's namespace: the model Service (its pods by tenant and deployment
label), the Inference Extension's InferencePool (the same pods, the port the model server
listens on, the pool's endpoint picker), an InferenceObjective whose priority is the tier's request
criticality, and an HTTPRoute from the hostname `<deployment>.<tenant>.<domain>` on the platform's
shared Gateway to the pool (or to the Service, for a gateway without the extension), with the
tier's timeouts. Nothing rendered names another namespace: every backend reference is local to the
route, so the API server's namespace boundary is the tenant boundary, and the hostname is made of
two DNS labels that cannot contain the dot that separates them, so no two (tenant, deployment)
pairs share one.

API versions: Gateway API v1 (sigs.k8s.io/gateway-api v1.6.3), InferencePool
inference.networking.k8s.io/v1 and InferenceObjective inference.networking.x-k8s.io/v1alpha2
(sigs.k8s.io/gateway-api-inference-extension v1.5.0; InferenceObjective replaced v0.x's
InferenceModel and its criticality enum with an integer priority).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pdp.schemas.names import is_dns_label
from pdp.substrate.kubernetes import runtimes
from pdp.substrate.kubernetes.objects import Obj
from pdp.substrate.kubernetes.resources import register
from pdp.substrate.kubernetes.workload import DEPLOYMENT_LABEL
from pdp.substrate.labels import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL

GATEWAY_API = "gateway.networking.k8s.io"
POOL_API = "inference.networking.k8s.io"
OBJECTIVE_API = "inference.networking.x-k8s.io"
# The port every model-server runtime listens on (pdp/substrate/kubernetes/runtimes.py).
SERVING_PORT = runtimes.PORT
# The endpoint picker (the extension's EPP) each pool names: its gRPC ext-proc port.
PICKER_PORT = 9002


@dataclass(frozen=True)
class TierRouting:
    """What an SLA tier means on the request path. `priority`: the InferenceObjective's (higher is
    served first under contention); `criticality`: the v0.x InferenceModel name of that level."""

    request_timeout: str
    backend_timeout: str
    priority: int
    criticality: str


# Timeouts bound one whole request (gateway to client) and one backend attempt; long generations of
# the higher tiers get more time. Spot requests are shed first under contention.
TIERS: dict[str, TierRouting] = {
    "enterprise": TierRouting("300s", "280s", 100, "Critical"),
    "standard": TierRouting("120s", "110s", 0, "Standard"),
    "spot": TierRouting("60s", "55s", -100, "Sheddable"),
}

_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")


class RouteError(ValueError):
    """A field that cannot make a route (named in the message)."""


@dataclass(frozen=True)
class GatewayRef:
    """The platform's shared Gateway (the fleet's `gateway` section)."""

    name: str
    namespace: str
    domain: str
    class_name: str = "gpupaas-inference"
    tls_secret: str = "gpupaas-gateway-tls"

    @classmethod
    def from_fleet(cls, fleet: Mapping[str, Any]) -> GatewayRef | None:
        section = fleet.get("gateway")
        if not section:
            return None
        ref = cls(
            name=str(section.get("name", "")),
            namespace=str(section.get("namespace", "")),
            domain=str(section.get("domain", "")),
            class_name=str(section.get("class_name", cls.class_name)),
            tls_secret=str(section.get("tls_secret", cls.tls_secret)),
        )
        for field in ("name", "namespace", "class_name", "tls_secret"):
            _label(f"fleet.gateway.{field}", getattr(ref, field))
        if not _DOMAIN.fullmatch(ref.domain) or len(ref.domain) > 200:
            raise RouteError(
                f"fleet.gateway.domain: {ref.domain!r} is not a DNS name of at most 200 characters"
            )
        return ref


def _label(field: str, value: str) -> str:
    if not is_dns_label(value):
        raise RouteError(f"{field}: {value!r} is not a DNS label (a-z, 0-9, '-', at most 63, no dot)")
    return value


def object_name(deployment: str) -> str:
    """The objects' name: the deployment's, unless it cannot name a Service (DNS-1035: starts with
    a letter); then a prefixed name with a digest, so two deployments never share it."""
    if deployment[:1].isalpha():
        return deployment
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:8]
    return f"d-{deployment[:50]}-{digest}"


def hostname(tenant: str, deployment: str, gateway: GatewayRef) -> str:
    return f"{deployment}.{tenant}.{gateway.domain}"


def _meta(tenant: str, deployment: str, name: str, namespace: str) -> dict[str, Any]:
    labels = {TENANT_LABEL: tenant, DEPLOYMENT_LABEL: deployment, MANAGED_BY_LABEL: MANAGED_BY}
    return {"name": name, "namespace": namespace, "labels": labels}


def render(
    tenant: str,
    namespace: str,
    deployment: str,
    tier: str,
    gateway: GatewayRef,
    *,
    inference_extension: bool = True,
) -> list[Obj]:
    """Service, InferencePool, InferenceObjective and HTTPRoute of one deployment, in apply order
    (the route last, once what it points at exists). Without the extension: Service and route."""
    _label("tenant", tenant)
    _label("namespace", namespace)
    _label("deployment", deployment)
    if tier not in TIERS:
        raise RouteError(f"tier: {tier!r} is not one of {', '.join(TIERS)}")
    routing = TIERS[tier]
    name = object_name(deployment)
    pods = {TENANT_LABEL: tenant, DEPLOYMENT_LABEL: deployment}
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(tenant, deployment, name, namespace),
        "spec": {
            "selector": pods,
            "ports": [
                {"name": "http", "port": SERVING_PORT, "targetPort": runtimes.PORT_NAME, "protocol": "TCP"}
            ],
        },
    }
    backend: dict[str, Any] = {"kind": "Service", "name": name, "port": SERVING_PORT}
    out = [service]
    if inference_extension:
        out.append(
            {
                "apiVersion": f"{POOL_API}/v1",
                "kind": "InferencePool",
                "metadata": _meta(tenant, deployment, name, namespace),
                "spec": {
                    "selector": {"matchLabels": pods},
                    "targetPorts": [{"number": SERVING_PORT}],
                    "endpointPickerRef": {
                        "name": f"{name}-epp",
                        "port": {"number": PICKER_PORT},
                        # A pool whose picker is down serves nothing rather than unbalanced.
                        "failureMode": "FailClose",
                    },
                },
            }
        )
        out.append(
            {
                "apiVersion": f"{OBJECTIVE_API}/v1alpha2",
                "kind": "InferenceObjective",
                "metadata": _meta(tenant, deployment, name, namespace),
                "spec": {
                    "priority": routing.priority,
                    "poolRef": {"group": POOL_API, "kind": "InferencePool", "name": name},
                },
            }
        )
        backend = {"group": POOL_API, "kind": "InferencePool", "name": name}
    out.append(
        {
            "apiVersion": f"{GATEWAY_API}/v1",
            "kind": "HTTPRoute",
            "metadata": _meta(tenant, deployment, name, namespace),
            "spec": {
                "parentRefs": [
                    {
                        "group": GATEWAY_API,
                        "kind": "Gateway",
                        "name": gateway.name,
                        "namespace": gateway.namespace,
                    }
                ],
                "hostnames": [hostname(tenant, deployment, gateway)],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        # No namespace: a backend reference is local to the route's namespace.
                        "backendRefs": [backend],
                        "timeouts": {
                            "request": routing.request_timeout,
                            "backendRequest": routing.backend_timeout,
                        },
                    }
                ],
            },
        }
    )
    return out


def gateway_object(gateway: GatewayRef) -> Obj:
    """The platform's shared Gateway: HTTPS for every deployment hostname under the domain, routes
    attached only from tenant namespaces (labelled with the tenant label)."""
    return {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "Gateway",
        "metadata": {
            "name": gateway.name,
            "namespace": gateway.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        },
        "spec": {
            "gatewayClassName": gateway.class_name,
            "listeners": [
                {
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "hostname": f"*.{gateway.domain}",
                    "tls": {
                        "mode": "Terminate",
                        "certificateRefs": [{"kind": "Secret", "name": gateway.tls_secret}],
                    },
                    "allowedRoutes": {
                        "kinds": [{"group": GATEWAY_API, "kind": "HTTPRoute"}],
                        "namespaces": {
                            "from": "Selector",
                            "selector": {"matchExpressions": [{"key": TENANT_LABEL, "operator": "Exists"}]},
                        },
                    },
                }
            ],
        },
    }


# kind -> (plural, namespaced), for the Kubernetes adapter's REST paths (Service is Kubernetes' own).
RESOURCES: dict[str, tuple[str, bool]] = {
    "Gateway": ("gateways", True),
    "HTTPRoute": ("httproutes", True),
    "InferencePool": ("inferencepools", True),
    "InferenceObjective": ("inferenceobjectives", True),
}
register(RESOURCES)
