"""Model servers (pdp/substrate/kubernetes/runtimes.py), pure: each runtime's own command line,
image and health probes, from the deployment's GPUs per replica, batch size, model and GPU vendor."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from pdp.substrate.kubernetes import runtimes, workload
from tests.conftest import EXAMPLES, ROOT

FLEET = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
PLACE = workload.placement({"eligible_clusters": ["us-east"]}, FLEET, "none")


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def deployment(**spec: Any) -> dict[str, Any]:
    base = {"deployment": "chat", "gpu_class": "H100-80GB", "gpus_per_replica": 4, "replicas": 2}
    return workload.render("globex", "globex-ml", {**base, **spec}, PLACE, FLEET)


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_vllm_is_the_default_with_its_openai_server_flags_and_health_probes() -> None:
    obj = deployment(batch_size=32, model="meta-llama/Llama-3.1-8B-Instruct")
    [c] = pod(obj)["containers"]
    assert c["image"] == "vllm/vllm-openai:v0.11.0"
    assert c["command"] == ["vllm", "serve"]
    assert c["args"][0] == "meta-llama/Llama-3.1-8B-Instruct"
    assert flag(c["args"], "--tensor-parallel-size") == "4" and flag(c["args"], "--max-num-seqs") == "32"
    assert flag(c["args"], "--port") == "8000"
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "4"}
    # Tensor parallelism's shared memory.
    assert pod(obj)["volumes"] == [{"name": "shm", "emptyDir": {"medium": "Memory"}}]
    assert c["volumeMounts"] == [{"name": "shm", "mountPath": "/dev/shm"}]


def test_the_model_defaults_to_the_deployment_and_no_batch_size_leaves_the_servers_default() -> None:
    [c] = pod(deployment())["containers"]
    assert c["args"][0] == "chat" and "--max-num-seqs" not in c["args"]


def test_a_batch_size_change_re_renders_the_server_flags() -> None:
    before, after = deployment(batch_size=8), deployment(batch_size=64)
    assert flag(pod(before)["containers"][0]["args"], "--max-num-seqs") == "8"
    assert flag(pod(after)["containers"][0]["args"], "--max-num-seqs") == "64"
    # The pod template changes, so the Deployment rolls its pods.
    assert before["spec"]["template"] != after["spec"]["template"]


def test_amd_gpu_classes_get_the_rocm_builds() -> None:
    [c] = pod(deployment(gpu_class="MI300X", batch_size=16))["containers"]
    assert c["image"] == "rocm/vllm:rocm7.0.0_vllm_0.11.2_20251210"
    assert c["resources"]["limits"] == {"amd.com/gpu": "4"}
    [t] = pod(deployment(gpu_class="MI300X", runtime="tgi"))["containers"]
    assert t["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.4-rocm"


def test_tgi_takes_shards_and_batch_size_on_its_launcher() -> None:
    [c] = pod(deployment(runtime="tgi", batch_size=24, gpus_per_replica=2, model="bigscience/bloom-560m"))[
        "containers"
    ]
    assert c["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.4"
    assert c["command"] == ["text-generation-launcher"]
    args = c["args"]
    assert flag(args, "--model-id") == "bigscience/bloom-560m"
    assert flag(args, "--num-shard") == "2" and flag(args, "--max-batch-size") == "24"
    assert flag(args, "--port") == "8000" and c["readinessProbe"]["httpGet"]["path"] == "/health"


def test_triton_serves_a_model_repository_with_its_v2_health_endpoints() -> None:
    obj = deployment(runtime="triton", model="s3://models/chat", batch_size=16)
    [c] = pod(obj)["containers"]
    assert c["image"] == "nvcr.io/nvidia/tritonserver:25.01-py3"
    assert c["command"] == ["tritonserver"]
    assert c["args"] == ["--model-repository=s3://models/chat", "--http-port=8000"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # No server-wide batch size: carried on the pod template, so a change still rolls the pods.
    assert obj["spec"]["template"]["metadata"]["annotations"] == {"gpupaas.io/max-batch-size": "16"}


def test_runtimes_that_cannot_serve_the_deployment_are_refused_by_name() -> None:
    with pytest.raises(runtimes.UnsupportedRuntime, match="runtime 'triton' has no image for amd GPUs"):
        deployment(gpu_class="MI300X", runtime="triton")
    with pytest.raises(runtimes.UnsupportedRuntime, match="runtime 'onnx' is not one of vllm, tgi, triton"):
        deployment(runtime="onnx")


def test_the_intent_schema_takes_runtime_and_model_and_refuses_others() -> None:
    schema = yaml.safe_load((ROOT / "pdp" / "schemas" / "intent.schema.json").read_text())
    payload = {"deployment": "chat", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1}
    ok = {
        "kind": "deploy_model",
        "tenant": "globex",
        "deploy_model": {**payload, "runtime": "tgi", "model": "org/m"},
    }
    jsonschema.validate(ok, schema)
    for bad in ({"runtime": "onnx"}, {"model": "rm -rf /"}, {"model": ""}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**ok, "deploy_model": {**payload, **bad}}, schema)


def test_a_re_placement_keeps_the_runtime_and_model() -> None:
    spec = {"deployment": "chat", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1}
    intent = workload.deploy_intent("globex", {**spec, "runtime": "tgi", "model": "org/m"}, {}, "lifecycle")
    assert intent["deploy_model"]["runtime"] == "tgi" and intent["deploy_model"]["model"] == "org/m"
