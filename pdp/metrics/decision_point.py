"""Decisions, recorded in one place (`DecisionPoint`, pdp/point.py) whatever the entry point: how
many by kind and outcome, their reason codes, how long they took, and the engine's failures."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram

import pdp
from pdp.intents import KINDS
from pdp.metrics.bundles import BUNDLE_ACTIVATED, BUNDLE_AGE, BUNDLE_INFO
from pdp.metrics.conventions import LATENCY_BUCKETS, PREFIX

ENTRY_POINTS = frozenset(
    {"grpc", "grpc_batch", "http", "webhook", "extender", "lifecycle", "cli", "embedded"}
)
OTHER = "other"
_KINDS = frozenset(KINDS)
# Reason codes the PDP itself answers with (pdp/engine/base.py, pdp/decision.py); the policy's own
# are read from the METADATA of the Rego sources (custom.code).
ENGINE_CODES = frozenset({"ENGINE_ERROR", "ENGINE_UNAVAILABLE", "ENGINE_TIMEOUT", "ENGINE_NO_ACTIVE_BUNDLE"})
# Above this many catalogue codes something is wrong with the sources: the rest count as "other".
MAX_CATALOGUE = 512
_CODE_LINE = re.compile(r"^#\s+code:\s*([A-Z][A-Z0-9_]{0,63})\s*$", re.MULTILINE)

DECISIONS = Counter(
    PREFIX + "decisions_total",
    "Decisions answered, by entry point, intent kind and outcome.",
    ("entry_point", "kind", "outcome"),
)
DECISION_REASONS = Counter(
    PREFIX + "decision_reasons_total",
    "Reasons given in decisions, by entry point, outcome and reason code (other: not in the catalogue).",
    ("entry_point", "outcome", "reason"),
)
DECISION_DURATION = Histogram(
    PREFIX + "decision_duration_seconds",
    "Time from the decision point receiving intents to the decision being rendered.",
    ("entry_point", "outcome"),
    buckets=LATENCY_BUCKETS,
)
ENGINE_ERRORS = Counter(
    PREFIX + "engine_errors_total",
    "Evaluations the engine could not answer (each answered DENY), by error kind.",
    ("entry_point", "kind"),
)


def policy_codes(policies: Path) -> frozenset[str]:
    """The reason codes the Rego sources under `policies` declare in METADATA (custom.code)."""
    codes: set[str] = set()
    for path in sorted(policies.rglob("*.rego")):
        if not path.name.endswith("_test.rego"):
            codes.update(_CODE_LINE.findall(path.read_text(encoding="utf-8")))
    return frozenset(sorted(codes)[:MAX_CATALOGUE])


def default_policies() -> Path:
    """The checkout's policies/, or the installed package's copy (pdp/opa/binary.py's
    PROJECT_ROOT, not imported: OPA's status records metrics here, so metrics import nothing of
    OPA). Found from the `pdp` package, not from this file: measured from a module's own place,
    the folder moved when the module did, and every reason code counted as "other"."""
    package = Path(pdp.__file__).resolve().parent
    return next(
        (f for f in (package.parent / "policies", package / "_data" / "policies") if f.is_dir()),
        package.parent / "policies",
    )


class DecisionMetrics:
    """Records decisions; one per process (`decisions`), used by every DecisionPoint.

    Labelled children are cached by their label values: `labels()` costs a lock and a dict lookup
    per call, and a decision touches three metrics."""

    def __init__(self, catalogue: frozenset[str] | None = None) -> None:
        self._catalogue = catalogue
        self._revision: str | None = None
        self._children: dict[tuple[str, ...], Any] = {}
        self._revision_lock = threading.Lock()

    @property
    def catalogue(self) -> frozenset[str]:
        if self._catalogue is None:
            folder = default_policies()
            self._catalogue = (policy_codes(folder) if folder.is_dir() else frozenset()) | ENGINE_CODES
        return self._catalogue

    def reason_label(self, code: str) -> str:
        return code if code in self.catalogue else OTHER

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric._name, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def decided(
        self,
        entry_point: str,
        kind: str,
        outcome: str,
        reason_codes: Iterable[str],
        seconds: float,
        revision: str,
    ) -> None:
        entry = entry_point if entry_point in ENTRY_POINTS else OTHER
        self._child(DECISIONS, entry, _kind_label(kind), outcome).inc()
        self._child(DECISION_DURATION, entry, outcome).observe(seconds)
        for code in reason_codes:
            self._child(DECISION_REASONS, entry, outcome, self.reason_label(code)).inc()
        if revision and revision != self._revision:
            self.revision_seen(revision)

    def engine_error(self, entry_point: str, code: str) -> None:
        entry = entry_point if entry_point in ENTRY_POINTS else OTHER
        kind = code.removeprefix("ENGINE_").lower() if code in ENGINE_CODES else OTHER
        self._child(ENGINE_ERRORS, entry, kind).inc()

    def revision_seen(self, revision: str) -> None:
        """A decision was made on `revision`: the info gauge carries only the current one."""
        with self._revision_lock:
            if revision == self._revision:
                return
            if self._revision is not None:
                # Shared between processes, a value is never removed, only set: 0 for the old one.
                BUNDLE_INFO.labels(self._revision).set(0)
            BUNDLE_INFO.clear()
            BUNDLE_INFO.labels(revision).set(1)
            activated = time.time()
            BUNDLE_ACTIVATED.set(activated)
            BUNDLE_AGE.activated = activated
            self._revision = revision


def _kind_label(kind: str) -> str:
    return kind if kind in _KINDS else OTHER


decisions = DecisionMetrics()
