"""The API server's own guard on routes in tenant namespaces (pure rendering): a
ValidatingAdmissionPolicy and its binding, so a route a tenant writes itself (its namespace admin
role allows HTTPRoutes) can neither claim another tenant's hostname on the shared Gateway nor
point at a backend in another namespace. The lifecycle's rendered routes pass it by construction.

In tenant namespaces (label gpupaas.io/tenant), an HTTPRoute must name hostnames, each exactly one
DNS label under `<tenant>.<domain>` (the tenant read from the namespace's label, not from the
route), and no backendRef may name a namespace other than the route's."""

from __future__ import annotations

from pdp.substrate.gateway.routes import GATEWAY_API, GatewayRef
from pdp.substrate.kubernetes.objects import Obj
from pdp.substrate.labels import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL

POLICY_NAME = "gpupaas-tenant-routes"


def route_policy(gateway: GatewayRef) -> list[Obj]:
    """The ValidatingAdmissionPolicy and its Deny binding."""
    domain = gateway.domain.replace(".", "\\\\.")
    tenant = f"namespaceObject.metadata.labels['{TENANT_LABEL}']"
    labels = {MANAGED_BY_LABEL: MANAGED_BY}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": POLICY_NAME, "labels": labels},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [GATEWAY_API],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["httproutes"],
                        }
                    ],
                    "namespaceSelector": {"matchExpressions": [{"key": TENANT_LABEL, "operator": "Exists"}]},
                },
                "validations": [
                    {
                        "expression": "has(object.spec.hostnames) && size(object.spec.hostnames) > 0",
                        "message": "an HTTPRoute in a tenant namespace must name its hostnames "
                        f"(<deployment>.<tenant>.{gateway.domain})",
                        "reason": "Forbidden",
                    },
                    {
                        "expression": "!has(object.spec.hostnames) || object.spec.hostnames.all(h, "
                        f"h.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?\\\\.' + {tenant} + '\\\\.{domain}$'))",
                        "messageExpression": "'hostnames of an HTTPRoute in a namespace of tenant ' + "
                        f"{tenant} + ' must be <deployment>.' + {tenant} + '.{gateway.domain}'",
                        "reason": "Forbidden",
                    },
                    {
                        "expression": "!has(object.spec.rules) || object.spec.rules.all(r, "
                        "!has(r.backendRefs) || r.backendRefs.all(b, "
                        "!has(b.namespace) || b.namespace == object.metadata.namespace))",
                        "message": "an HTTPRoute in a tenant namespace may only reference backends "
                        "in its own namespace",
                        "reason": "Forbidden",
                    },
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY_NAME, "labels": labels},
            "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
        },
    ]
