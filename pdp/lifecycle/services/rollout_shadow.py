"""The watch after an activation: the previous revision shadows the new one on the lifecycle's own
decisions, and the disagreement rate decides a rollback.

While a rollout watches, a ShadowEvaluator (pdp/replay/shadow.py) of the previous policy tree is
attached to the lifecycle's decision point: every decision the lifecycle makes on the new revision
(the API's checks, the workflows' decisions) is decided again on the previous one, off the answer
path, counted in `gpupaas_pdp_shadow_evaluations_total{result}` and logged to
`<lifecycle state>/rollouts/<id>/shadow.jsonl` (`pdp replay --shadow-log` reads it). The rate is
disagree / (agree + disagree) of the evaluations since it was attached, read from those counters.

The evaluator lives in the worker's memory: a restarted worker attaches it again when the
workflow resumes its watch (the samples before the crash are not counted again).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdp.lifecycle.runtime import Runtime
from pdp.metrics import SHADOW_EVALUATIONS
from pdp.replay.shadow import ShadowEvaluator


@dataclass
class _Watch:
    evaluator: ShadowEvaluator
    agree: float
    disagree: float


_watches: dict[str, _Watch] = {}
_lock = threading.Lock()


def _counts() -> tuple[float, float]:
    """(agree, disagree) of the process's shadow evaluations so far."""
    found = {"agree": 0.0, "disagree": 0.0}
    for metric in SHADOW_EVALUATIONS.collect():
        for sample in metric.samples:
            result = sample.labels.get("result", "")
            if sample.name.endswith("_total") and result in found:
                found[result] = sample.value
    return found["agree"], found["disagree"]


def log_path(rt: Runtime, rollout: str) -> Path:
    return rt.settings.state / "rollouts" / rollout / "shadow.jsonl"


def attach(rt: Runtime, rollout: str, previous: Path) -> None:
    """Shadow the lifecycle's decisions with the policy tree `previous` (once per rollout)."""
    from pdp.oneshot import cached_bundle

    with _lock:
        if rollout in _watches:
            return
        stack = rt.policy.stack
        bundle, _ = cached_bundle(stack.settings.replace(policies=previous))
        evaluator = ShadowEvaluator(bundle, log_path(rt, rollout)).start()
        agree, disagree = _counts()
        _watches[rollout] = _Watch(evaluator, agree, disagree)
        stack.point.shadow = evaluator.offer


def observed(rollout: str) -> dict[str, Any]:
    """The shadow's evaluations since it was attached: agree, disagree, samples, rate."""
    with _lock:
        watch = _watches.get(rollout)
    if watch is None:
        return {"attached": False, "agree": 0, "disagree": 0, "samples": 0, "rate": 0.0}
    agree, disagree = _counts()
    a, d = int(agree - watch.agree), int(disagree - watch.disagree)
    return {
        "attached": True,
        "agree": a,
        "disagree": d,
        "samples": a + d,
        "rate": d / (a + d) if a + d else 0.0,
    }


def detach(rt: Runtime, rollout: str) -> None:
    with _lock:
        watch = _watches.pop(rollout, None)
    if watch is None:
        return
    point = rt.policy.stack.point
    if point.shadow == watch.evaluator.offer:
        point.shadow = None
    watch.evaluator.stop()
