"""Two revisions of the policies decide alike: the batch decision of a corpus of intents, on the
example fleet and on the generated 1,000-tenant / 10,000-node fleet, compared document by document.

    git archive <commit> policies | tar -x -C /tmp/before
    .venv/bin/python -m bench.policy_equivalence --before /tmp/before/policies [--no-scale] \
        [--added constraints.node_label_keys]

The corpus: every example intent and policy sample; each deploy_model, scale and
request_gpu_sharing for every tenant (and an unknown one), GPU class, sharing mode, cluster and size;
each workload sample in the namespace of every tenant (and of none), with its GPU resources, pins
and sharing resources varied. Exits 1 and prints the first differences when a decision differs.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.inputs import synthetic_config
from bench.policy_cost import EXAMPLES, ROOT, build
from pdp.opa.binary import find_opa

CLASSES = ["H100-80GB", "A100-40GB", "MI300X", "B200"]
SHARING = ["none", "mig", "time-slicing", "mps"]
PRODUCTS = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB", "NVIDIA-H100-80GB-HBM3-SHARED", "unknown"]
REGIONS = ["eu-west-1", "us-east-1", "nowhere-1"]
RESOURCES: list[dict[str, int]] = [
    {"nvidia.com/gpu": 2},
    {"nvidia.com/gpu": 100},
    {"amd.com/gpu": 1},
    {"nvidia.com/gpu.shared": 1},
    {"nvidia.com/mig-1g.10gb": 1},
    {},
]


def _samples() -> list[dict[str, Any]]:
    out = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "intents").glob("*.json"))]
    for path in sorted((ROOT / "policies").glob("**/samples/*.json")):
        out.append(json.loads(path.read_text())[path.stem]["input"])
    return out


def _named(tenants: list[str], clusters: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tenant, cls, sharing in itertools.product(tenants, CLASSES, SHARING):
        for cluster, replicas in itertools.product([None, *clusters], [1, 4, 400]):
            deploy: dict[str, Any] = {"deployment": "d", "gpu_class": cls, "gpus_per_replica": 2}
            deploy |= {"replicas": replicas, "sharing": sharing, "batch_size": 16 * replicas}
            if cluster is not None:
                deploy["cluster"] = cluster
            out.append({"kind": "deploy_model", "tenant": tenant, "usage": {cls: 4}, "deploy_model": deploy})
        scale = {"deployment": "d", "gpu_class": cls, "gpus_per_replica": 4, "current_replicas": 1}
        for target in (2, 300):
            intent = {
                "kind": "scale",
                "tenant": tenant,
                "usage": {},
                "scale": {**scale, "target_replicas": target},
            }
            out.append(intent)
        mode = {"gpu_class": cls, "mode": sharing}
        out.append({"kind": "request_gpu_sharing", "tenant": tenant, "request_gpu_sharing": mode})
    return out


def _workloads(base: list[dict[str, Any]], namespaces: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for intent in base:
        if intent.get("kind") not in ("admit_workload", "place_workload"):
            continue
        for ns, resources in itertools.product(namespaces, RESOURCES):
            variant = copy.deepcopy(intent)
            workload = variant[variant["kind"]]
            workload["namespace"] = ns
            workload["resources"] = resources
            out.append(variant)
        for product, region in itertools.product(PRODUCTS, REGIONS):
            variant = copy.deepcopy(intent)
            selector = variant[variant["kind"]].setdefault("node_selector", {})
            selector |= {"nvidia.com/gpu.product": product, "topology.kubernetes.io/region": region}
            out.append(variant)
    return out


def example_corpus() -> list[dict[str, Any]]:
    samples = _samples()
    tenants = ["acme-eu", "globex", "initech-spot", "nobody"]
    namespaces = ["acme-prod", "globex-ml", "initech-batch", "kube-system"]
    return samples + _named(tenants, ["eu-west", "us-east", "mars"]) + _workloads(samples, namespaces)


def scale_corpus() -> list[dict[str, Any]]:
    samples = [s for s in _samples() if s.get("kind") in ("admit_workload", "place_workload")]
    return _named(["t0", "t1", "t2", "t3"], ["c0", "c1"]) + _workloads(samples, ["t0-a", "t1-a", "t2-b", "x"])


def decide(bundle: Path, intents: list[dict[str, Any]]) -> list[Any]:
    argv = [str(find_opa()), "eval", "--bundle", str(bundle), "--stdin-input", "--format", "json"]
    argv.append("data.gpupaas.decision.batch")
    stdin = json.dumps({"intents": intents})
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]  # type: ignore[no-any-return]


def _drop_added(old: dict[str, Any], new: dict[str, Any], added: Sequence[str]) -> None:
    """Removes from `new` each dotted field of `added` that `old` lacks: a field the policy now
    adds (e.g. constraints.node_label_keys) is not a changed decision; any other change is."""
    for field in added:
        *parents, leaf = field.split(".")
        was, now = old, new
        for part in parents:
            was, now = was.get(part) or {}, now.get(part) or {}
        if leaf not in was and isinstance(now, dict):
            now.pop(leaf, None)


def compare(
    name: str,
    tenants: Path,
    fleet: Path,
    corpus: list[dict[str, Any]],
    before: Path,
    work: Path,
    added: Sequence[str] = (),
) -> int:
    revisions = []
    for label, policies in (("before", before), ("after", ROOT / "policies")):
        bundle, _ = build(tenants, fleet, work / f"{name}-{label}", False, policies)
        revisions.append(decide(bundle, corpus))
    differ = 0
    for intent, old, new in zip(corpus, *revisions, strict=True):
        for doc in (old, new):
            doc.pop("bundle_revision", None)
        _drop_added(old, new, added)
        if old != new:
            differ += 1
            if differ <= 5:
                print(json.dumps({"intent": intent, "before": old, "after": new}, indent=1))
    outcomes = sorted({d["outcome"] for d in revisions[1]})
    print(f"{name}: {len(corpus)} intents, {differ} decisions differ; outcomes {outcomes}")
    return differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--before", type=Path, required=True, help="the policies to compare against")
    parser.add_argument("--no-scale", action="store_true", help="only the example fleet")
    parser.add_argument(
        "--added",
        action="append",
        default=[],
        metavar="FIELD",
        help="a decision field (dotted) the policies now add: not counted as a difference where "
        "the earlier policies lack it",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="policy-equivalence-") as tmp:
        work = Path(tmp)
        example = (EXAMPLES / "tenants", EXAMPLES / "fleet.yaml", example_corpus())
        differ = compare("example", *example, args.before, work, args.added)
        if not args.no_scale:
            synthetic_config(work / "scale")
            scale = work / "scale"
            large = (scale / "tenants", scale / "fleet.yaml", scale_corpus())
            differ += compare("scale", *large, args.before, work, args.added)
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
