"""The model server of a deployment: the serving runtime's own container spec (pure).

Each runtime is rendered the way its documentation says to run it, at the pinned version:

- **vLLM** (default), OpenAI-compatible server: `vllm serve MODEL` with `--tensor-parallel-size`
  (GPUs per replica) and `--max-num-seqs` (the batch size: the most sequences in one iteration),
  health on `GET /health`. Flags as in vLLM v0.11.0's engine arguments
  (docs.vllm.ai/en/v0.11.0/configuration/engine_args.html); image `vllm/vllm-openai:v0.11.0`
  (docs.vllm.ai/en/stable/deployment/docker), and for AMD GPU classes AMD's ROCm build
  `rocm/vllm:rocm7.0.0_vllm_0.11.2_20251210` (a published tag of the rocm/vllm repository,
  vLLM 0.11.2: the same flags). Tensor parallelism needs shared memory beyond the container
  default (the docs' `--ipc=host` / `--shm-size`): /dev/shm is a memory-backed emptyDir.
- **TGI**, Hugging Face text-generation-inference 3.3.4: `text-generation-launcher` with
  `--model-id`, `--num-shard` (GPUs per replica), `--max-batch-size` (the batch size), `--port`;
  health on `GET /health` (huggingface.co/docs/text-generation-inference/reference/launcher);
  image `ghcr.io/huggingface/text-generation-inference:3.3.4`, `-rocm` for AMD.
- **Triton** Inference Server 25.01: `tritonserver --model-repository=URI --http-port=8000`,
  readiness `GET /v2/health/ready`, liveness `GET /v2/health/live`; image
  `nvcr.io/nvidia/tritonserver:25.01-py3`. Triton has no server-wide batch size (it is each
  model's `max_batch_size` in the repository's config.pbtxt) and NVIDIA publishes no ROCm build:
  an AMD class is refused, the batch size is carried as a pod annotation only.

Every runtime listens on port 8000 (named `http`), so a Service or route targets one port name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RUNTIMES = ("vllm", "tgi", "triton")
DEFAULT_RUNTIME = "vllm"
PORT = 8000
PORT_NAME = "http"
BATCH_SIZE_ANNOTATION = "gpupaas.io/max-batch-size"

VLLM_VERSION = "v0.11.0"
VLLM_IMAGE = f"vllm/vllm-openai:{VLLM_VERSION}"
VLLM_ROCM_IMAGE = "rocm/vllm:rocm7.0.0_vllm_0.11.2_20251210"
TGI_VERSION = "3.3.4"
TGI_IMAGE = f"ghcr.io/huggingface/text-generation-inference:{TGI_VERSION}"
TGI_ROCM_IMAGE = f"{TGI_IMAGE}-rocm"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"

# A model server loads its weights before it answers: the startup probe gives it up to 30 min
# (180 x 10 s) before liveness counts, then 3 missed checks restart it.
_STARTUP = {"periodSeconds": 10, "failureThreshold": 180}
_LIVENESS = {"periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5}
_READINESS = {"periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 5}


class UnsupportedRuntime(ValueError):
    """A deployment the runtime cannot serve; the message names the field."""


def _get(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT_NAME}}


def supports(runtime: str, vendor: str) -> bool:
    return runtime in RUNTIMES and not (runtime == "triton" and vendor == "amd")


def check(spec: Mapping[str, Any], vendor: str) -> None:
    """UnsupportedRuntime when the deployment names a runtime that cannot serve it."""
    runtime = str(spec.get("runtime") or DEFAULT_RUNTIME)
    if runtime not in RUNTIMES:
        raise UnsupportedRuntime(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if not supports(runtime, vendor):
        raise UnsupportedRuntime(
            f"runtime {runtime!r} has no image for {vendor} GPUs (GPU class {spec.get('gpu_class')!r}); "
            "use vllm or tgi"
        )


def _vllm(model: str, gpus: int, batch: int | None, vendor: str) -> dict[str, Any]:
    args = [model, "--host", "0.0.0.0", "--port", str(PORT), "--tensor-parallel-size", str(gpus)]
    if batch:
        args += ["--max-num-seqs", str(batch)]
    return {
        "image": VLLM_ROCM_IMAGE if vendor == "amd" else VLLM_IMAGE,
        "command": ["vllm", "serve"],
        "args": args,
        "readinessProbe": {**_get("/health"), **_READINESS},
        "livenessProbe": {**_get("/health"), **_LIVENESS},
        "startupProbe": {**_get("/health"), **_STARTUP},
    }


def _tgi(model: str, gpus: int, batch: int | None, vendor: str) -> dict[str, Any]:
    args = ["--model-id", model, "--num-shard", str(gpus), "--port", str(PORT)]
    if batch:
        args += ["--max-batch-size", str(batch)]
    return {
        "image": TGI_ROCM_IMAGE if vendor == "amd" else TGI_IMAGE,
        "command": ["text-generation-launcher"],
        "args": args,
        "readinessProbe": {**_get("/health"), **_READINESS},
        "livenessProbe": {**_get("/health"), **_LIVENESS},
        "startupProbe": {**_get("/health"), **_STARTUP},
    }


def _triton(model: str, gpus: int, batch: int | None, vendor: str) -> dict[str, Any]:
    return {
        "image": TRITON_IMAGE,
        "command": ["tritonserver"],
        "args": [f"--model-repository={model}", f"--http-port={PORT}"],
        "readinessProbe": {**_get("/v2/health/ready"), **_READINESS},
        "livenessProbe": {**_get("/v2/health/live"), **_LIVENESS},
        "startupProbe": {**_get("/v2/health/live"), **_STARTUP},
    }


_RENDER = {"vllm": _vllm, "tgi": _tgi, "triton": _triton}


def container(spec: Mapping[str, Any], vendor: str, resource: str) -> dict[str, Any]:
    """The model server container of one deployment: `runtime` (default vllm), `model` (default
    the deployment's name), `gpus_per_replica` GPUs of `resource`, `batch_size` if given."""
    check(spec, vendor)
    runtime = str(spec.get("runtime") or DEFAULT_RUNTIME)
    model = str(spec.get("model") or spec["deployment"])
    gpus = int(spec["gpus_per_replica"])
    batch = int(spec["batch_size"]) if spec.get("batch_size") else None
    return {
        "name": "model",
        **_RENDER[runtime](model, gpus, batch, vendor),
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "resources": {"requests": {resource: str(gpus)}, "limits": {resource: str(gpus)}},
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }


def volumes() -> list[dict[str, Any]]:
    return [{"name": "shm", "emptyDir": {"medium": "Memory"}}]


def template_annotations(spec: Mapping[str, Any]) -> dict[str, str]:
    """Triton's batch size lives in each model's config, not on its command line: the pod template
    carries it, so a change still rolls the pods and shows what the platform asked."""
    if str(spec.get("runtime") or DEFAULT_RUNTIME) == "triton" and spec.get("batch_size"):
        return {BATCH_SIZE_ANNOTATION: str(spec["batch_size"])}
    return {}
