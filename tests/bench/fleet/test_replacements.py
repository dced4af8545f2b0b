"""A pod evicted from a failed node is re-created as a workload controller would: a creation the
namespace's quota refuses because it still counts the evicted pod is tried again; a task's first
creation refused by quota is a refusal, counted once."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from bench.fleet.mapping import load_mapping, plan
from bench.fleet.replay import run
from bench.fleet.replay.run import Replay
from bench.fleet.trace import read_nodes, read_tasks

SLICE = Path(__file__).resolve().parents[3] / "bench" / "fleet" / "slice"


class QuotaStillCounting:
    """A core API that refuses the first `refusals` creations as kube-apiserver's quota does."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls = 0

    def create_namespaced_pod(self, namespace: str, pod: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            raise _refusal(
                f'pods "{pod["metadata"]["name"]}" is forbidden: exceeded quota: gpupaas-gpu-quota'
            )


def _refusal(message: str) -> ApiException:
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({"kind": "Status", "message": message, "code": 403})
    return exc


def _replay(core: QuotaStillCounting) -> tuple[Replay, Any]:
    the_plan = plan(
        read_nodes(SLICE / "nodes-every-3rd.csv")[:30],
        read_tasks(SLICE / "tasks-every-8th.csv")[:5],
        load_mapping(),
    )
    fleet = SimpleNamespace(with_pdp=True, kueue=None, core=core)
    replay = Replay(fleet, the_plan, 30.0)  # type: ignore[arg-type]
    arrival = next(a for a in the_plan.arrivals if a.tenant.tier != "spot")
    return replay, arrival


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "REPLACE_BACKOFF", (0.01, 0.01, 0.01, 0.01, 0.01))


def test_a_replacement_the_quota_refuses_while_it_counts_the_evicted_pod_is_tried_again() -> None:
    core = QuotaStillCounting(refusals=3)
    replay, arrival = _replay(core)
    pod = copy.deepcopy(arrival.pod)
    pod["metadata"]["name"] += "-r1"
    replay._create(pod, arrival, f"{pod['metadata']['namespace']}/{arrival.pod['metadata']['name']}")
    view = replay.result.views[f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"]
    assert core.calls == 4 and view.created_ok and view.replaces
    assert not replay.result.refused and not replay.result.submit_errors


def test_a_replacement_refused_past_every_retry_is_a_refusal() -> None:
    core = QuotaStillCounting(refusals=100)
    replay, arrival = _replay(core)
    pod = copy.deepcopy(arrival.pod)
    pod["metadata"]["name"] += "-r1"
    replay._create(pod, arrival, "ns/evicted")
    assert core.calls == len(run.REPLACE_BACKOFF) + 1
    assert replay.result.refused == {"ResourceQuota exceeded": 1}


def test_a_first_creation_refused_by_quota_is_not_retried() -> None:
    core = QuotaStillCounting(refusals=1)
    replay, arrival = _replay(core)
    replay._create(copy.deepcopy(arrival.pod), arrival)
    assert core.calls == 1 and replay.result.refused == {"ResourceQuota exceeded": 1}
