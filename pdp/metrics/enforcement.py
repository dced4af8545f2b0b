"""The enforcement points' requests: AdmissionReviews the webhook answers and the scheduler
extender's calls, counted and timed in their handlers."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

from pdp.metrics.conventions import LATENCY_BUCKETS, PREFIX

WEBHOOK_REQUESTS = Counter(
    PREFIX + "webhook_requests_total",
    "AdmissionReviews answered, by outcome (allow, deny, error: not an AdmissionReview).",
    ("outcome",),
)
WEBHOOK_DURATION = Histogram(
    PREFIX + "webhook_request_duration_seconds",
    "Time to answer an AdmissionReview, by outcome.",
    ("outcome",),
    buckets=LATENCY_BUCKETS,
)
EXTENDER_REQUESTS = Counter(
    PREFIX + "extender_requests_total",
    "Scheduler extender calls, by verb and outcome (filtered: some node refused, "
    "all_eligible, error: malformed arguments).",
    ("verb", "outcome"),
)
EXTENDER_DURATION = Histogram(
    PREFIX + "extender_request_duration_seconds",
    "Time to answer a scheduler extender call, by verb and outcome.",
    ("verb", "outcome"),
    buckets=LATENCY_BUCKETS,
)


def timed_since(started: float) -> float:
    return max(time.monotonic() - started, 0.0)


# outcome -> its (requests, duration) children: `labels()` takes a lock and builds a key each call.
_webhook_children: dict[str, tuple[Any, Any]] = {}


def webhook_answered(outcome: str, started: float) -> None:
    children = _webhook_children.get(outcome)
    if children is None:
        children = (WEBHOOK_REQUESTS.labels(outcome), WEBHOOK_DURATION.labels(outcome))
        _webhook_children[outcome] = children
    children[0].inc()
    children[1].observe(timed_since(started))


def extender_answered(verb: str, outcome: str, started: float) -> None:
    EXTENDER_REQUESTS.labels(verb, outcome).inc()
    EXTENDER_DURATION.labels(verb, outcome).observe(timed_since(started))
