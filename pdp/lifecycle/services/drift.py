"""The lifecycle worker's cluster drift audit (issue 15): each cluster the worker applies to is
audited (pdp/substrate/kubernetes/enforcement/pod_audit.py) against the revision the worker
decides with, every `--drift-audit-every` seconds and on demand (POST /v1/drift/audit). The last
report is kept for the product API (GET /v1/drift; a tenant sees only its own workloads'
findings) and exported as the gpupaas_pdp_drift_* gauges on the worker's /metrics. A cluster that
cannot be read is reported with its error, never fatal: the others are audited all the same.

Each finding has a stable id (cluster, namespace, pod name and uid), which an admin names to
remediate it (pdp/lifecycle/workflows/drift.py).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pdp.lifecycle.clusters import Clusters
from pdp.lifecycle.runtime import Runtime
from pdp.point import DecideOptions, DecisionPoint
from pdp.substrate.kubernetes.enforcement import pod_audit

log = logging.getLogger(__name__)
# (connect, read) seconds of each list call: an unreachable cluster is reported, not waited for.
LIST_TIMEOUT = (5.0, 60.0)


def mask(text: str, names: Iterable[str]) -> str:
    """`text` with each of `names` (whole names: tenant and namespace names are DNS labels) replaced
    by "(another tenant)": a reason may name the tenant whose pods share the node (isolation)."""
    words = sorted({n for n in names if n}, key=len, reverse=True)
    if not words:
        return text
    pattern = re.compile(r"(?<![-a-z0-9])(" + "|".join(map(re.escape, words)) + r")(?![-a-z0-9])")
    return pattern.sub("(another tenant)", text)


def finding_id(cluster: str, f: pod_audit.Finding) -> str:
    digest = hashlib.sha256("\0".join((cluster, f.namespace, f.pod, f.uid)).encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Drifted:
    """A finding in one cluster of the worker."""

    id: str
    cluster: str
    finding: pod_audit.Finding

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "cluster": self.cluster, **self.finding.as_json()}


@dataclass
class Report:
    finished_at: str
    revision: str
    seconds: float
    clusters: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Drifted] = field(default_factory=list)

    def as_json(self, tenant: str | None = None, hide: Iterable[str] = ()) -> dict[str, Any]:
        """The report; for a tenant (`tenant` set), its own workloads' findings only, with the names
        in `hide` (the other tenants' and their namespaces) masked in the reasons, and nothing of
        the clusters (how many pods run there is other tenants' business)."""
        base = {"finished_at": self.finished_at, "revision": self.revision}
        if tenant is not None:
            own = [d.as_json() for d in self.findings if d.finding.tenant == tenant]
            masked = [{**f, "reasons": mask(f["reasons"], hide)} for f in own]
            return {**base, "findings": masked}
        return {
            **base,
            "seconds": self.seconds,
            "audited": sum(int(c.get("audited", 0)) for c in self.clusters),
            "clusters": self.clusters,
            "findings": [d.as_json() for d in self.findings],
        }


def cluster_apis(clusters: Clusters) -> dict[str, Any]:
    """cluster -> Kubernetes ApiClient of each cluster the worker applies to ({} in a dry run;
    SINGLE, "", names the one cluster of a worker given --kubeconfig)."""
    out: dict[str, Any] = {}
    for name in clusters.names():
        adapter = clusters.adapter(name)
        api = getattr(adapter, "api", None)
        if getattr(adapter, "mode", "") == "kubernetes" and api is not None:
            out[name] = api
    return out


def api_of(rt: Runtime, cluster: str) -> Any:
    api = cluster_apis(rt.clusters).get(cluster)
    if api is None:
        raise LookupError(f"cluster {cluster!r} is not one this worker applies to")
    return api


class Auditor:
    """Audits the worker's clusters, one audit at a time, and keeps the last report."""

    def __init__(
        self, clusters: Clusters, point: DecisionPoint, revision: Callable[[], str], timeout: float = 10.0
    ) -> None:
        """`revision`: the bundle revision the point decides with (a report without findings says it)."""
        self._clusters = clusters
        self.point = point
        self._active_revision = revision
        self.options = DecideOptions(timeout=timeout, record=False, entry_point="lifecycle")
        self._lock = threading.Lock()
        self._last: Report | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def clusters(self) -> dict[str, Any]:
        return cluster_apis(self._clusters)

    def last(self) -> Report | None:
        return self._last

    def find(self, fid: str) -> Drifted | None:
        report = self._last
        return next((d for d in report.findings if d.id == fid), None) if report else None

    def audit(self) -> Report:
        with self._lock:
            started = time.monotonic()
            clusters: list[dict[str, Any]] = []
            findings: list[Drifted] = []
            revisions: set[str] = set()
            for name, api in sorted(self.clusters.items()):
                try:
                    seen = pod_audit.snapshot(api, LIST_TIMEOUT)
                except Exception as exc:  # unreachable, refused, timed out: reported, never fatal
                    log.warning("drift audit: cluster %s cannot be read: %s", name or "(the cluster)", exc)
                    clusters.append({"cluster": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
                    continue
                audited = 0
                for pod in seen.pods:
                    decided, found = pod_audit.check_pod(pod, seen, self.point, self.options)
                    audited += decided
                    if found is not None:
                        findings.append(Drifted(finding_id(name, found), name, found))
                        revisions.add(found.revision)
                drifted = sum(1 for d in findings if d.cluster == name)
                clusters.append({"cluster": name, "audited": audited, "findings": drifted})
            revision = sorted(revisions)[-1] if revisions else self._revision()
            report = Report(
                datetime.now(UTC).isoformat(),
                revision,
                round(time.monotonic() - started, 3),
                clusters,
                findings,
            )
            unreachable = sum(1 for c in clusters if "error" in c)
            pod_audit.export_findings(
                [d.finding for d in findings], sum(c.get("audited", 0) for c in clusters), unreachable
            )
            self._last = report
            return report

    def _revision(self) -> str:
        try:
            return self._active_revision()
        except Exception:  # the engine's status unreadable: the report says no revision rather than fail
            return ""

    def start(self, every: float) -> None:
        """Audit now and then every `every` seconds, in a thread, until stop()."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.audit()
                except Exception:  # a bug in one round must not end the periodic audit
                    log.exception("drift audit failed")
                self._stop.wait(every)

        self._thread = threading.Thread(target=loop, name="drift-audit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


_auditor: Auditor | None = None


def install(auditor: Auditor | None) -> None:
    global _auditor
    _auditor = auditor


def auditor() -> Auditor:
    if _auditor is None:
        raise RuntimeError("the drift auditor is not installed (start the worker)")
    return _auditor
