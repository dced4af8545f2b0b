"""The shadow candidate (pdp serve --shadow-bundle): live decisions decided again, and how the
candidate's answers differ."""

from __future__ import annotations

from prometheus_client import Counter

from pdp.metrics.conventions import PREFIX

SHADOW_EVALUATIONS = Counter(
    PREFIX + "shadow_evaluations_total",
    "Live decisions the shadow candidate (pdp serve --shadow-bundle) decided again, by whether it "
    "agreed (outcome, reason codes and constraints equal) or disagreed.",
    ("result",),
)
SHADOW_DISAGREEMENTS = Counter(
    PREFIX + "shadow_disagreements_total",
    "Shadow disagreements by kind of change (allow-to-deny, deny-to-allow, outcome, reasons, "
    "constraints); one decision may count under several.",
    ("change",),
)
SHADOW_DROPPED = Counter(
    PREFIX + "shadow_dropped_total",
    "Live decisions not shadowed because the shadow queue was full (the answer never waits for it).",
)
