"""OPA Gatekeeper as the webhook's benchmark peer: its residency rule rendered from the project's
tenants and fleet, and checked with `gator verify` on the same pods the project's webhook judges.

    scripts/build-gatekeeper                     # gator and the manager, pinned, into the cache
    .venv/bin/python -m bench.gatekeeper verify  # render the suite and run `gator verify` on it

The ConstraintTemplate is bench/gatekeeper/template.yaml; the Constraint maps each tenant
namespace to the regions its data_residency allows, computed here as the policy does
(`gpupaas.lib.allowed_regions`: the regions of the fleet's clusters in the allowed jurisdictions).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

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
        cases.append({"name": name, "object": f"{name}.yaml", "assertions": [{"violations": denied}]})
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("command", choices=["verify"])
    parser.add_argument("--dir", type=Path, help="where to write the suite (default: a temporary folder)")
    args = parser.parse_args()
    args.dir = args.dir or Path(tempfile.mkdtemp(prefix="gpupaas-gatekeeper-"))
    if not gator().exists():
        raise SystemExit(f"{gator()} missing: run scripts/build-gatekeeper")
    write_suite(args.dir, ROOT / "examples" / "tenants", ROOT / "examples" / "fleet.yaml")
    result = verify(args.dir)
    print(result.stdout + result.stderr, end="")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
