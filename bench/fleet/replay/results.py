"""What a replay run records: the refusals, samples, failures and the run's result."""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException

from bench.fleet.promises import PodView, Violation

# The longest the replay clock waits for the cluster to settle before it goes on anyway.
MAX_STALL_SECONDS = 5.0
_CODE = re.compile(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b")


QUOTA_EXCEEDED = "ResourceQuota exceeded"


def refusal_reason(exc: ApiException) -> str:
    """A short, stable name for why the API server refused a pod: the PDP's reason codes, a
    quota, or the status."""
    body = str(exc.body or exc.reason or "")
    with contextlib.suppress(ValueError, AttributeError):  # not a Status: the text as it is
        body = str(json.loads(body).get("message", body))
    if "exceeded quota" in body:
        return QUOTA_EXCEEDED
    codes = sorted(set(_CODE.findall(body)))
    return ", ".join(codes) if codes else f"HTTP {exc.status}"


@dataclass(frozen=True)
class Failure:
    """At a point of the replay (a fraction of its length), the `nodes` that then hold the most
    enterprise pods fail: the failures that test the most promises."""

    at_fraction: float
    nodes: int


@dataclass
class Sample:
    at: float  # wall seconds since the replay began
    gpus_by_tier: dict[str, float]
    pending_by_tier: dict[str, int]
    clock: float = 0.0  # the replay clock then (trace seconds / the compression)


@dataclass
class RunResult:
    with_pdp: bool
    wall_seconds: float = 0.0
    stalled_seconds: float = 0.0  # wall time the replay clock waited for the cluster to settle
    forced_seconds: float = 0.0  # replay time that went on unsettled (MAX_STALL_SECONDS passed)
    views: dict[str, PodView] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    refused_by_tier: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    violations: dict[tuple[str, str], Violation] = field(default_factory=dict)
    evicted: list[str] = field(default_factory=list)
    failed_nodes: list[str] = field(default_factory=list)
    submit_errors: list[str] = field(default_factory=list)
    answered: int = 0  # pod creations the API server answered, admitted or refused
    last_answer: float = 0.0  # when it answered the last of them
    scheduler_started: float | None = None  # held until every creation was answered (saturation)
