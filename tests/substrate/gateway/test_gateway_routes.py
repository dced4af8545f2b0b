"""The inference gateway's rendering (pdp/substrate/gateway/routes.py) without a cluster: the fleet's
gateway section, its errors, and names that cannot name a Service as they are. The objects' real
acceptance is tests/e2e/test_gateway_e2e.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pdp.config.documents import ConfigErrors, load_config
from pdp.substrate.gateway.routes import GatewayRef, RouteError, object_name, render
from pdp.substrate.kubernetes import workload
from tests.conftest import EXAMPLES

GATEWAY = {"name": "inference", "namespace": "gpupaas-gateway", "domain": "models.example.com"}


def test_no_gateway_section_renders_nothing_and_a_full_one_is_read() -> None:
    assert GatewayRef.from_fleet({}) is None
    ref = GatewayRef.from_fleet({"gateway": {**GATEWAY, "class_name": "envoy"}})
    assert ref == GatewayRef("inference", "gpupaas-gateway", "models.example.com", class_name="envoy")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {**GATEWAY, "domain": "Models.Example.com"},
            r"fleet\.gateway\.domain: 'Models\.Example\.com' is not a DNS name",
        ),
        ({**GATEWAY, "domain": "a..b"}, r"fleet\.gateway\.domain"),
        ({**GATEWAY, "namespace": "gw.evil"}, r"fleet\.gateway\.namespace: 'gw\.evil' is not a DNS label"),
        ({**GATEWAY, "name": ""}, r"fleet\.gateway\.name"),
    ],
)
def test_a_bad_gateway_section_is_refused_naming_the_field(section: dict[str, str], message: str) -> None:
    with pytest.raises(RouteError, match=message):
        GatewayRef.from_fleet({"gateway": section})


def test_the_fleet_schema_takes_the_gateway_section_and_names_a_bad_field(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    fleet = tmp_path / "examples" / "fleet.yaml"
    doc = yaml.safe_load(fleet.read_text())
    doc["fleet"]["gateway"] = GATEWAY
    fleet.write_text(yaml.safe_dump(doc))
    load_config(tmp_path / "examples" / "tenants", fleet)
    doc["fleet"]["gateway"] = {**GATEWAY, "domain": "-bad-"}
    fleet.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigErrors, match=r"gateway\.domain"):
        load_config(tmp_path / "examples" / "tenants", fleet)


def test_a_name_that_cannot_name_a_service_gets_a_distinct_prefixed_one() -> None:
    assert object_name("llama") == "llama"
    digit = object_name("7b-chat")
    assert digit.startswith("d-7b-chat-") and digit[0].isalpha() and len(digit) <= 63
    assert object_name("7b-chat") != object_name("d-7b-chat")
    long = object_name("1" + "a" * 62)
    assert len(long) <= 63
    objs = render("acme", "acme-prod", "7b-chat", "standard", GatewayRef(**GATEWAY))
    assert {o["metadata"]["name"] for o in objs} == {digit}
    # The hostname keeps the deployment's own name; the pods are found by its label.
    assert objs[-1]["spec"]["hostnames"] == ["7b-chat.acme.models.example.com"]
    assert objs[0]["spec"]["selector"]["gpupaas.io/deployment"] == "7b-chat"


def test_an_unknown_tier_is_refused_naming_it() -> None:
    with pytest.raises(RouteError, match=r"^tier: 'gold' is not one of enterprise, standard, spot$"):
        render("acme", "acme-prod", "llm", "gold", GatewayRef(**GATEWAY))


@pytest.mark.parametrize("runtime", ["vllm", "tgi", "triton"])
def test_the_route_reaches_the_pods_the_workload_renders_on_their_port(runtime: str) -> None:
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    place = workload.placement({"eligible_clusters": ["eu-west"]}, fleet, "none")
    spec = {
        "deployment": "llm",
        "gpu_class": "H100-80GB",
        "gpus_per_replica": 2,
        "replicas": 1,
        "runtime": runtime,
    }
    deployment = workload.render("acme", "acme-prod", spec, place, fleet)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {
        p["name"]: p["containerPort"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    service, pool, _, _ = render("acme", "acme-prod", "llm", "standard", GatewayRef(**GATEWAY))
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == [
        ports[service["spec"]["ports"][0]["targetPort"]]
    ]
