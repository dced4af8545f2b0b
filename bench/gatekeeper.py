"""OPA Gatekeeper as the webhook's benchmark peer: its residency rule rendered from the project's
tenants and fleet, and checked with `gator verify` on the same pods the project's webhook judges.

    scripts/build-gatekeeper                     # gator and the manager, pinned, into the cache
    .venv/bin/python -m bench.gatekeeper verify  # render the suite and run `gator verify` on it
    .venv/bin/python -m bench.gatekeeper bench   # the manager against the e2e control plane, vegeta

The ConstraintTemplate is bench/gatekeeper/template.yaml; the Constraint maps each tenant
namespace to the regions its data_residency allows, computed here as the policy does
(`gpupaas.lib.allowed_regions`: the regions of the fleet's clusters in the allowed jurisdictions).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.peer.verdicts import Verdict, VerdictError, verdict

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "bench" / "gatekeeper" / "template.yaml"
VERSION = "v3.23.1"
REGION_LABEL = "topology.kubernetes.io/region"


def cache_dir() -> Path:
    """Outside the checkout, per pinned version, like scripts/setup's OPA."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpupaas"
    return Path(os.environ.get("GPUPAAS_CACHE") or default) / "gatekeeper" / VERSION


def gator() -> Path:
    return cache_dir() / "gator"


def _jurisdiction_allowed(residency: str, jurisdiction: str) -> bool:
    return residency == "any" or (
        residency.endswith("-only") and residency.removesuffix("-only").upper() == jurisdiction
    )


def allowed_regions(tenants: Path, fleet: Path) -> dict[str, list[str]]:
    """Tenant namespace -> the regions its data_residency allows."""
    clusters = yaml.safe_load(fleet.read_text())["fleet"]["clusters"].values()
    out: dict[str, list[str]] = {}
    for path in sorted(tenants.glob("*.yaml")):
        tenant = yaml.safe_load(path.read_text())["tenant"]
        residency = tenant["data_residency"]
        regions = sorted(
            {c["region"] for c in clusters if _jurisdiction_allowed(residency, c["jurisdiction"])}
        )
        for namespace in tenant.get("namespaces", []):
            out[namespace] = regions
    return out


def constraint(regions: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": "GpupaasResidency",
        "metadata": {"name": "gpupaas-residency"},
        "spec": {
            "match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]},
            "parameters": {"regionLabel": REGION_LABEL, "allowedRegions": regions},
        },
    }


def gpu_pod(namespace: str, region: str | None = None, affinity: list[str] | None = None) -> dict[str, Any]:
    """The bench's pod (bench/run.py admission_review), optionally pinned to a region."""
    spec: dict[str, Any] = {
        "containers": [{"name": "m", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        "tolerations": [
            {"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}
        ],
    }
    if region:
        spec["nodeSelector"] = {REGION_LABEL: region}
    if affinity:
        term = {"matchExpressions": [{"key": REGION_LABEL, "operator": "In", "values": affinity}]}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "llama-0", "namespace": namespace},
        "spec": spec,
    }


# name -> (pod, denied by the residency rule)
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "bench-pod": (gpu_pod("acme-prod"), False),
    "eu-tenant-eu-region": (gpu_pod("acme-prod", "eu-west-1"), False),
    "eu-tenant-us-region": (gpu_pod("acme-prod", "us-east-1"), True),
    "eu-tenant-us-affinity": (gpu_pod("acme-prod", affinity=["eu-west-1", "us-east-1"]), True),
}


def write_suite(directory: Path, tenants: Path, fleet: Path) -> Path:
    """A `gator verify` suite: the template, the Constraint, and every case as a sample object."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "template.yaml").write_text(TEMPLATE.read_text())
    (directory / "constraint.yaml").write_text(yaml.safe_dump(constraint(allowed_regions(tenants, fleet))))
    cases = []
    for name, (pod, denied) in CASES.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(pod))
        cases.append(
            {
                "name": name,
                "object": f"{name}.yaml",
                "assertions": [{"violations": "yes" if denied else "no"}],
            }
        )
    suite = {
        "kind": "Suite",
        "apiVersion": "test.gatekeeper.sh/v1alpha1",
        "metadata": {"name": "gpupaas-residency"},
        "tests": [
            {
                "name": "residency",
                "template": "template.yaml",
                "constraint": "constraint.yaml",
                "cases": cases,
            }
        ],
    }
    path = directory / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(gator()), "verify", "-v", str(directory)], capture_output=True, text=True)


def crd_dir() -> Path:
    """Gatekeeper's CRDs, from the module source `go install` left in the module cache."""
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    module = Path(modcache.stdout.strip()) / "github.com" / "open-policy-agent" / f"gatekeeper/v3@{VERSION}"
    return module / "manifest_staging" / "charts" / "gatekeeper" / "crds"


def _admit(url: str, review: bytes) -> Verdict | None:
    """The peer's verdict on `review`; None while it answers no review or an error."""
    try:
        return verdict(url, review, timeout=5)
    except VerdictError:
        return None


def _denied_by_policy(answer: Verdict | None) -> bool:
    """A denial by the Constraint (403), not an error answered as a denial (Gatekeeper's 500)."""
    return answer is not None and not answer.allowed and answer.code == 403


def _allowed(answer: Verdict | None) -> bool:
    return answer is not None and answer.allowed


@dataclass(frozen=True)
class Peer:
    url: str
    pid: int


@contextlib.contextmanager
def running_peer(work: Path, tenants: Path, fleet: Path) -> Iterator[Peer]:
    """Gatekeeper's manager serving `/v1/admit` out of cluster against a real kube-apiserver (the
    e2e control plane) with the residency template and Constraint and the tenants' namespaces;
    yields it once it denies a US-pinned pod of the EU tenant by the Constraint (403) and allows
    the bench's pod, so that no measurement is of an error path."""
    from kubernetes import client, config, utils

    from pdp.net.certs import issue_server_cert, make_ca
    from tests.e2e.controlplane import ControlPlane, free_port, kube_binaries

    (work / "kube").mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(kube_binaries(), work / "kube")
    proc: subprocess.Popen[bytes] | None = None
    try:
        plane.start()
        api = config.new_client_from_config(str(plane.kubeconfig))
        for crd in sorted(crd_dir().glob("*.yaml")):
            utils.create_from_yaml(api, str(crd))
        core = client.CoreV1Api(api)
        # Gatekeeper reads a review's namespace from the API server: without it every review is
        # answered `allowed: false` with code 500 and no policy evaluated (an error path, not a peer).
        for namespace in ["gatekeeper-system", *sorted(allowed_regions(tenants, fleet))]:
            core.create_namespace({"metadata": {"name": namespace}})
        certs = work / "gatekeeper-certs"
        certs.mkdir(parents=True, exist_ok=True)
        tls = issue_server_cert(make_ca(work / "gatekeeper-pki"), work / "gatekeeper-serving", ["127.0.0.1"])
        (certs / "tls.crt").write_bytes(tls.cert.read_bytes())
        (certs / "tls.key").write_bytes(tls.key.read_bytes())
        port = free_port()
        argv = [str(cache_dir() / "gatekeeper"), "--kubeconfig", str(plane.kubeconfig)]
        argv += ["--operation=webhook", "--operation=generate", "--disable-cert-rotation"]
        argv += ["--cert-dir", str(certs), "--host", "127.0.0.1", "--port", str(port), "--debug-use-fake-pod"]
        argv += ["--health-addr", f"127.0.0.1:{free_port()}", "--metrics-addr", "0"]
        argv += ["--metrics-backend=opentelemetry", f"--otlp-endpoint=127.0.0.1:{free_port()}"]
        argv += ["--log-level", "ERROR"]
        log = (work / "gatekeeper.log").open("wb")
        env = {**os.environ, "POD_NAMESPACE": "gatekeeper-system"}
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        objects = client.CustomObjectsApi(api)
        template = yaml.safe_load(TEMPLATE.read_text())
        objects.create_cluster_custom_object("templates.gatekeeper.sh", "v1", "constrainttemplates", template)
        wanted = constraint(allowed_regions(tenants, fleet))
        url = f"https://127.0.0.1:{port}/v1/admit"
        us_pinned = json.dumps(admission_review(CASES["eu-tenant-us-region"][0])).encode()
        bench_pod = json.dumps(admission_review(CASES["bench-pod"][0])).encode()
        deadline = time.monotonic() + 180
        created = False
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gatekeeper exited with {proc.returncode}: see {work / 'gatekeeper.log'}")
            if not created:
                try:
                    objects.create_cluster_custom_object(
                        "constraints.gatekeeper.sh", "v1beta1", "gpupaasresidency", wanted
                    )
                    created = True
                except client.ApiException:
                    pass  # the Constraint kind is not served yet
            if created and _denied_by_policy(_admit(url, us_pinned)) and _allowed(_admit(url, bench_pod)):
                break
            if time.monotonic() > deadline:
                log_path = work / "gatekeeper.log"
                raise RuntimeError(f"gatekeeper did not enforce the Constraint: see {log_path}")
            time.sleep(0.5)
        yield Peer(url, proc.pid)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        plane.stop()


def admission_review(pod: dict[str, Any]) -> dict[str, Any]:
    namespace = pod["metadata"]["namespace"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bench",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "name": pod["metadata"]["name"],
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": pod,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("command", choices=["verify", "bench"])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, help="where to write the suite (default: a temporary folder)")
    args = parser.parse_args()
    args.dir = args.dir or Path(tempfile.mkdtemp(prefix="gpupaas-gatekeeper-"))
    if not gator().exists():
        raise SystemExit(f"{gator()} missing: run scripts/build-gatekeeper")
    tenants, fleet = ROOT / "examples" / "tenants", ROOT / "examples" / "fleet.yaml"
    if args.command == "bench":
        from bench.load import vegeta

        body = json.dumps(admission_review(CASES["bench-pod"][0])).encode()
        with running_peer(args.dir, tenants, fleet) as peer:
            print(f"gatekeeper {VERSION} at {peer.url}; load average {os.getloadavg()}", flush=True)
            loads = (("warm-up 200/s", 200), ("500/s", 500), ("saturation", None), ("1000/s", 1000))
            for load, rate in loads:
                stats = vegeta(peer.url, body, rate=rate, duration=args.duration)
                print(f"  gatekeeper   {load:18} {json.dumps(stats)}", flush=True)
        return 0
    write_suite(args.dir, tenants, fleet)
    result = verify(args.dir)
    print(result.stdout + result.stderr, end="")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
