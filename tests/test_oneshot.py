"""`pdp decide` without a server: built once per set of inputs, then answered in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pdp.embedded import EmbeddedPDP
from pdp.oneshot import decide_once, inputs_key
from pdp.records.log import DecisionLog
from tests.conftest import EXAMPLES, embedded_settings

VOLATILE = ("decision_id", "decided_at", "evaluation_ms")


def stable(decision: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in decision.items() if k not in VOLATILE}


def test_the_key_follows_every_input(workspace: Path) -> None:
    settings = embedded_settings(workspace)
    key = inputs_key(settings)
    assert inputs_key(settings) == key
    tenant = workspace / "examples" / "tenants" / "globex.yaml"
    doc = yaml.safe_load(tenant.read_text())
    doc["tenant"]["entitlements"]["H100-80GB"] += 1
    tenant.write_text(yaml.safe_dump(doc))
    after_tenant = inputs_key(settings)
    assert after_tenant != key
    fleet = workspace / "examples" / "fleet.yaml"
    fleet.write_text(fleet.read_text() + "\n# a comment is a change of input too\n")
    assert inputs_key(settings) not in (key, after_tenant)


@pytest.mark.parametrize("example", sorted((EXAMPLES / "intents").glob("*.json")), ids=lambda p: p.name)
def test_one_shot_answers_like_the_opa_sidecar(
    example: Path, stack: EmbeddedPDP, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = stack.settings.tenants.parent.parent
    settings = embedded_settings(root, state=tmp_path_factory.getbasetemp() / "oneshot-state")
    intent = json.loads(example.read_text())
    answer = decide_once(settings, intent)
    assert answer.revision == stack.bundle.revision if stack.bundle else False
    assert stable(answer.decision) == stable(stack.point.decide(intent).to_dict())


def test_second_call_uses_the_cached_build_and_records_the_decision(
    workspace: Path, opa_binary: Path
) -> None:
    settings = embedded_settings(workspace)
    intent = json.loads((EXAMPLES / "intents" / "02-acme-eu-deploy-us.json").read_text())
    first = decide_once(settings, intent)
    second = decide_once(settings, intent)
    assert (first.cached, second.cached) == (False, True)
    assert first.revision == second.revision
    assert stable(first.decision) == stable(second.decision)
    assert settings.decision_log is not None
    recorded = {r.decision_id for r in DecisionLog(settings.decision_log).query(tenant="acme-eu")}
    assert {first.decision["decision_id"], second.decision["decision_id"]} <= recorded
    cache = settings.state / "decide-cache"
    assert cache.stat().st_mode & 0o077 == 0
    assert all(p.stat().st_mode & 0o077 == 0 for p in cache.rglob("*") if p.is_file())


def test_a_changed_tenant_is_decided_on_a_new_build(workspace: Path, opa_binary: Path) -> None:
    settings = embedded_settings(workspace)
    intent = json.loads((EXAMPLES / "intents" / "04-globex-deploy-shared.json").read_text())
    before = decide_once(settings, intent)
    assert before.decision["outcome"] == "ALLOW"
    tenant = workspace / "examples" / "tenants" / "globex.yaml"
    doc = yaml.safe_load(tenant.read_text())
    doc["tenant"]["entitlements"]["A100-40GB"] = 2
    tenant.write_text(yaml.safe_dump(doc))
    after = decide_once(settings, intent)
    assert not after.cached and after.revision != before.revision
    assert after.decision["outcome"] != "ALLOW"  # 1 A100 in use + 2 asked, 2 now entitled


def test_an_unusable_compiled_module_is_compiled_again(workspace: Path, opa_binary: Path) -> None:
    settings = embedded_settings(workspace)
    intent = json.loads((EXAMPLES / "intents" / "01-acme-eu-deploy-eu.json").read_text())
    first = decide_once(settings, intent)
    for compiled in (settings.state / "decide-cache").rglob("module.cwasm"):
        compiled.write_bytes(b"not a compiled module")
    again = decide_once(settings, intent)
    assert again.cached and stable(again.decision) == stable(first.decision)
