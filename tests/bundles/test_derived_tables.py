"""The tables the bundle build derives from the policies (policies/gpupaas/derived) are in the
bundle, and a decision is the same with them as computed without them, for every example intent,
every policy sample and ~1,500 generated intents (bench/policy_equivalence.py's corpus)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from bench.policy_equivalence import example_corpus
from pdp.bundles.build import build_bundle
from pdp.config import load_config
from pdp.opa.binary import eval_query
from tests.conftest import EXAMPLES, ROOT

TABLES = ("constraint_sets", "workload_constraints", "deploy_constraints")


def _bundle_data(tmp_path: Path) -> dict[str, Any]:
    config = load_config(EXAMPLES / "tenants", EXAMPLES / "fleet.yaml")
    built = build_bundle(config, policies=ROOT / "policies", out_dir=tmp_path / "out", signing_key=None)
    with tarfile.open(built.path) as tar:
        member = tar.extractfile("/data.json") or tar.extractfile("data.json")
        assert member is not None
        return json.loads(member.read())  # type: ignore[no-any-return]


def _decide(data: dict[str, Any], path: Path, intents: list[dict[str, Any]]) -> list[Any]:
    path.write_text(json.dumps(data))
    return eval_query(  # type: ignore[no-any-return]
        "data.gpupaas.decision.batch",
        data_paths=[ROOT / "policies" / "gpupaas", path],
        input_doc={"intents": intents},
    )


def test_the_bundle_carries_the_tables_and_decides_as_without_them(tmp_path: Path, opa_binary: Path) -> None:
    data = _bundle_data(tmp_path)
    index = data["gpupaas"]["index"]
    assert set(TABLES) <= set(index)
    sets = index["constraint_sets"]
    assert len({json.dumps(s, sort_keys=True) for s in sets}) == len(sets)  # each document once
    acme = sets[index["workload_constraints"]["acme-eu"]["H100-80GB"]]
    assert acme["tolerations"][0]["value"] == "acme-eu" and acme["eligible_clusters"] == ["eu-west"]

    intents = example_corpus()
    with_tables = _decide(data, tmp_path / "with.json", intents)
    for name in TABLES:
        del index[name]
    without = _decide(data, tmp_path / "without.json", intents)
    assert len(with_tables) == len(intents) > 1000
    differ = [(i, a, b) for i, a, b in zip(intents, with_tables, without, strict=True) if a != b]
    assert differ == []
