"""The gpupaas.pdp collection's module and lookup, run by a real ansible-playbook against the PDP's
HTTP API (real OPA): answers, a DENY failing the task with its reasons, and no answer never taken
for an allow."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdp.api.http_server import HttpDecisionServer
from pdp.api.token_file import BearerTokens
from pdp.embedded import EmbeddedPDP
from tests.ansible import run_playbook
from tests.conftest import load_intent


@pytest.fixture(scope="module")
def pdp(stack: EmbeddedPDP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    token_file = tmp_path_factory.mktemp("ansible-token") / "token"
    tokens = BearerTokens.write_new(token_file, "ansible-token")
    with HttpDecisionServer(stack.point, tokens=tokens) as server:
        yield server.url, token_file


def play(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def connection(pdp: tuple[str, Path]) -> dict[str, Any]:
    return {"url": pdp[0], "token_file": str(pdp[1])}


def test_module_and_lookup_decide_and_a_deny_fails_with_its_reasons(
    pdp: tuple[str, Path], tmp_path: Path
) -> None:
    conn = connection(pdp)
    lookup_args = f"url='{conn['url']}', token_file='{conn['token_file']}'"
    tasks = [
        {"name": "allowed", "gpupaas.pdp.decide": {**conn, "intent": "{{ eu }}"}, "register": "allowed"},
        {
            "ansible.builtin.assert": {
                "that": [
                    "allowed.outcome == 'ALLOW'",
                    "allowed.changed == false",
                    "allowed.decision.constraints.eligible_clusters == ['eu-west']",
                    "allowed.decision_ids | length == 1",
                ]
            }
        },
        {
            "name": "batch on one revision, denial inspected (fail_on: [])",
            "gpupaas.pdp.decide": {**conn, "intents": ["{{ eu }}", "{{ us }}"], "fail_on": []},
            "register": "both",
        },
        {
            "ansible.builtin.assert": {
                "that": [
                    "both.decisions | map(attribute='outcome') | list == ['ALLOW', 'DENY']",
                    "both.decisions | map(attribute='bundle_revision') | unique | length == 1",
                    "both.reasons[0] is search(reason_line)",
                ]
            }
        },
        {
            "name": "a denial fails the task",
            "block": [
                {"gpupaas.pdp.decide": {**conn, "intent": "{{ us }}"}},
                {"ansible.builtin.set_fact": {"denial_passed": True}},
            ],
            "rescue": [
                {
                    "ansible.builtin.assert": {
                        "that": [
                            "denial_passed is not defined",
                            "ansible_failed_result.outcome == 'DENY'",
                            "ansible_failed_result.msg is search('RESIDENCY_VIOLATION')",
                            "ansible_failed_result.msg is search('acme-eu')",
                        ]
                    }
                }
            ],
        },
        {
            "name": "needs approval fails by default too",
            "block": [{"gpupaas.pdp.decide": {**conn, "intent": "{{ over }}"}}],
            "rescue": [
                {
                    "ansible.builtin.assert": {
                        "that": [
                            "ansible_failed_result.msg is search('NEEDS_APPROVAL QUOTA_APPROVAL_REQUIRED')"
                        ]
                    }
                }
            ],
        },
        {
            "name": "the lookup on the controller",
            "ansible.builtin.set_fact": {
                "looked_up": f"{{{{ lookup('gpupaas.pdp.decision', eu, us, {lookup_args}, fail_on=[]) }}}}"
            },
        },
        {
            "ansible.builtin.assert": {
                "that": ["looked_up | map(attribute='outcome') | list == ['ALLOW', 'DENY']"]
            }
        },
        {
            "name": "a lookup denial raises",
            "block": [
                {
                    "ansible.builtin.debug": {
                        "msg": f"{{{{ lookup('gpupaas.pdp.decision', us, {lookup_args}) }}}}"
                    }
                }
            ],
            "rescue": [
                {
                    "ansible.builtin.assert": {
                        "that": ["ansible_failed_result.msg is search('DENY RESIDENCY_VIOLATION')"]
                    }
                }
            ],
        },
        {
            "name": "check mode asks too (read-only)",
            "gpupaas.pdp.decide": {**conn, "intent": "{{ eu }}"},
            "check_mode": True,
            "register": "checked",
        },
        {"ansible.builtin.assert": {"that": ["checked.outcome == 'ALLOW'"]}},
    ]
    extra = {
        "eu": load_intent("01-acme-eu-deploy-eu.json"),
        "us": load_intent("02-acme-eu-deploy-us.json"),
        "over": load_intent("05-acme-eu-scale-past-entitlement.json"),
        "reason_line": r"^DENY RESIDENCY_VIOLATION: .* \(decision [0-9a-f-]{36}\)$",
    }
    done = run_playbook(tmp_path, play(tasks), extra_vars=extra)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "failed=0" in done.stdout and "rescued=3" in done.stdout


def test_an_unanswered_question_fails_the_play(pdp: tuple[str, Path], tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    wrong_token = tmp_path / "wrong"
    wrong_token.write_text("not-it\n")
    extra = {"eu": load_intent("01-acme-eu-deploy-eu.json")}
    for conn, expected in (
        ({"url": dead}, "cannot reach the PDP at " + dead),
        ({"url": pdp[0], "token_file": str(wrong_token)}, "refused the bearer token (HTTP 401)"),
        ({"url": pdp[0]}, "refused the bearer token (HTTP 401)"),
    ):
        done = run_playbook(
            tmp_path, play([{"gpupaas.pdp.decide": {**conn, "intent": "{{ eu }}"}}]), extra_vars=extra
        )
        assert done.returncode == 2, done.stdout
        assert expected in done.stdout, done.stdout[-3000:]
    # The plain denial also ends the play with the reasons in its output.
    denied = run_playbook(
        tmp_path,
        play([{"gpupaas.pdp.decide": {**connection(pdp), "intent": "{{ us }}"}}]),
        extra_vars={"us": load_intent("02-acme-eu-deploy-us.json")},
    )
    assert denied.returncode == 2 and "gpupaas PDP: DENY RESIDENCY_VIOLATION" in denied.stdout


def test_the_collection_documents_its_plugins() -> None:
    import os
    import subprocess
    import sys

    from tests.ansible import COLLECTIONS

    doc = str(Path(sys.executable).parent / "ansible-doc")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_NOCOLOR": "true"}
    for argv, expected in (
        (["gpupaas.pdp.decide"], "fail_on"),
        (["-t", "lookup", "gpupaas.pdp.decision"], "fail_on"),
        (["-t", "role", "gpupaas.pdp.slurm_tenant"], "gpupaas_tenant"),
    ):
        out = subprocess.run([doc, *argv], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0 and expected in out.stdout, out.stderr
