"""The lifecycle realizes a deployment's inference endpoint (pdp/substrate/gateway) on a real
kube-apiserver with the real Gateway API and Inference Extension CRDs, when the fleet names a
gateway: the route, pool and objective appear with the deployment, follow an SLA tier change, and
go when the deployment is deleted with its tenant's workloads."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from pdp.substrate.gateway.routes import TIERS
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gateway_crds import install_gateway_crds
from tests.lifecycle.harness import EXAMPLES, Worker, onboard, tenant_doc

GATEWAY = {"name": "inference", "namespace": "gpupaas-gateway", "domain": "models.example.com"}


def _examples_with_gateway(root: Path) -> Path:
    examples = root / "examples"
    shutil.copytree(EXAMPLES, examples)
    path = examples / "fleet.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["fleet"]["gateway"] = GATEWAY
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return examples


def _wait(worker: Worker, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    out: dict[str, Any] = worker.wait_workflow(response.json()["workflow_id"])["output"]
    return out


def test_a_deployment_gets_its_route_and_the_route_follows_the_tier(
    kube: ControlPlane, tmp_path: Path
) -> None:
    api = config.new_client_from_config(str(kube.kubeconfig))
    install_gateway_crds(api)
    custom = client.CustomObjectsApi(api)
    worker = Worker(tmp_path, kubeconfig=kube.kubeconfig, examples=_examples_with_gateway(tmp_path)).start()
    try:
        token = onboard(worker, tenant_doc("globex", "globex-gw", ["globex-gw-ml"]))
        with worker.client(token) as c:
            serve = {"deployment": "serve", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1}
            assert (
                _wait(worker, c.post("/v1/tenants/globex-gw/deployments", json=serve))["status"] == "applied"
            )

        def route() -> dict[str, Any]:
            found: dict[str, Any] = custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", "globex-gw-ml", "httproutes", "serve"
            )
            return found

        def priority() -> int:
            objective = custom.get_namespaced_custom_object(
                "inference.networking.x-k8s.io", "v1alpha2", "globex-gw-ml", "inferenceobjectives", "serve"
            )
            return int(objective["spec"]["priority"])

        first = route()
        assert first["spec"]["hostnames"] == ["serve.globex-gw.models.example.com"]
        assert first["spec"]["parentRefs"][0]["name"] == "inference"
        assert first["spec"]["rules"][0]["timeouts"]["request"] == TIERS["standard"].request_timeout
        assert first["spec"]["rules"][0]["backendRefs"][0]["kind"] == "InferencePool"
        pool = custom.get_namespaced_custom_object(
            "inference.networking.k8s.io", "v1", "globex-gw-ml", "inferencepools", "serve"
        )
        assert pool["spec"]["selector"]["matchLabels"] == {
            "gpupaas.io/tenant": "globex-gw",
            "gpupaas.io/deployment": "serve",
        }
        assert priority() == TIERS["standard"].priority

        with worker.client(token) as c:
            r = c.post("/v1/tenants/globex-gw/sla", json={"tier": "enterprise"})
            assert r.status_code == 202, r.text
        worker.approve(worker.wait_approval("globex-gw")["id"])
        assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
        assert route()["spec"]["rules"][0]["timeouts"] == {
            "request": TIERS["enterprise"].request_timeout,
            "backendRequest": TIERS["enterprise"].backend_timeout,
        }
        assert priority() == TIERS["enterprise"].priority
    finally:
        worker.stop()
        api.close()
