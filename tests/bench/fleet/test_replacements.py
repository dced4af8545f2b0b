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


def test_the_replay_clock_accounts_for_every_second_of_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wall time goes to the replay clock (settled), to waiting for the cluster (stalled), or to
    going on unsettled (forced): the first tick of every stall was counted in none of them, which
    is most of a stall when each creation starts one (157 s unaccounted in a whole-trace run)."""
    replay, _ = _replay(QuotaStillCounting(0))
    start = 1000.0
    ticks = [start + 0.02 * i for i in range(1, 401)]
    settled = iter([i % 3 != 0 for i in range(400)])
    monkeypatch.setattr(replay, "settled", lambda: next(settled))
    monkeypatch.setattr(run.time, "monotonic", iter(ticks).__next__)
    last = start
    for _ in ticks:
        last = replay._tick(last)
    monkeypatch.undo()
    accounted = replay._virtual + replay.result.stalled_seconds + replay.result.forced_seconds
    assert accounted == pytest.approx(ticks[-1] - start)


def test_a_pod_bound_and_gone_between_two_samples_has_its_promises_checked() -> None:
    """The watch's events are checked as they come: an EU-only tenant's pod bound to a US node
    and deleted before the next sample is a residency violation (the samples alone saw none of
    the scheduler-alone slice's 304 such pods once)."""
    replay, _ = _replay(QuotaStillCounting(0))
    eu = next(t for t in replay.plan.tenants.values() if t.residency == "eu-only")
    us = next(n for n, p in replay._nodes.items() if replay._jurisdictions[p.cluster] == "US")
    key = f"{eu.namespace}/p"
    replay.result.views[key] = run.PodView("p", eu.namespace, created_ok=True)
    pod = {
        "metadata": {"name": "p", "namespace": eu.namespace},
        "spec": {"nodeName": us, "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Running"},
    }
    replay._apply("MODIFIED", pod)
    replay._apply("DELETED", pod)
    replay._sample()
    assert ("residency broken", key) in replay.result.violations, replay.result.violations
