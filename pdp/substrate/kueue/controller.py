"""The PDP as a Kueue AdmissionCheck controller (the shape of Kueue's own provisioning controller).

Three kinds of work go through one queue, each key read fresh from the API server when processed:

- `platform`: the platform's Kueue objects (flavors, cohorts, priority classes, the AdmissionCheck)
  server-side applied, retried with backoff until Kueue's webhooks take them;
- `check/<name>`: an AdmissionCheck of this controller (`spec.controllerName`) marked `Active`
  (or not, when it carries parameters this check does not take), written only when it changes;
- `workload/<namespace>/<name>`: a Workload waiting on one of those checks (quota reserved, not
  finished, not evicted, entry Pending) is decided and its entry written: Ready with
  podSetUpdates, Rejected, or Retry (checks.py).

Every write is a server-side apply of the status subresource with this controller's own field
manager, holding only its own entry or condition, and only when something changed; the Workload
write carries uid and resourceVersion, so a Workload that changed meanwhile is decided again
rather than overwritten. A restart lists everything again and picks up what is still Pending.
Nothing is ever Ready without an ALLOW from the PDP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pdp.intents import InvalidIntent
from pdp.substrate.kubernetes.adapter import KubernetesAdapter
from pdp.substrate.kubernetes.enforcement.workloads import InvalidObject
from pdp.substrate.kueue import checks
from pdp.substrate.kueue.deciders import Decider, PdpUnavailable
from pdp.substrate.kueue.informer import Informer, WorkQueue
from pdp.substrate.kueue.objects import CONTROLLER_NAME
from pdp.substrate.kueue.version import API_VERSION, GROUP, VERSION

log = logging.getLogger("pdp.kueue")

FIELD_MANAGER = "gpupaas-pdp-admission-check"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AdmissionCheckController:
    def __init__(
        self,
        adapter: KubernetesAdapter,
        decider: Decider,
        *,
        platform: Sequence[Mapping[str, Any]] = (),
        retry: checks.RetryPolicy | None = None,
        controller_name: str = CONTROLLER_NAME,
        workers: int = 1,
        resync: float = 300.0,
    ) -> None:
        self.adapter = adapter
        self.decider = decider
        self.platform = [dict(o) for o in platform]
        self.retry = retry or checks.RetryPolicy()
        self.controller_name = controller_name
        self.queue = WorkQueue()
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._checks: set[str] = set()  # names of AdmissionChecks whose controllerName is ours
        self._workloads: set[str] = set()  # keys of every Workload seen
        self._failures: dict[str, int] = {}
        self.decisions = 0
        custom = client.CustomObjectsApi(adapter.api)

        def lister(plural: str) -> Any:
            def list_fn(**kw: Any) -> Any:
                return custom.list_cluster_custom_object(GROUP, VERSION, plural, **kw)

            return list_fn

        self.informers = [
            Informer(
                "admissionchecks", lister("admissionchecks"), self._on_check, self.stop_event, resync=resync
            ),
            Informer("workloads", lister("workloads"), self._on_workload, self.stop_event, resync=resync),
        ]
        self._threads = [
            threading.Thread(target=self._work, name=f"kueue-check-worker-{i}", daemon=True)
            for i in range(workers)
        ]

    # lifecycle ----------------------------------------------------------------------------------

    def start(self) -> AdmissionCheckController:
        if self.platform:
            self.queue.add("platform")
        for informer in self.informers:
            informer.start()
        for thread in self._threads:
            thread.start()
        return self

    def wait_synced(self, timeout: float) -> bool:
        return all(i.synced.wait(timeout) for i in self.informers)

    def stop(self) -> None:
        self.stop_event.set()
        self.queue.close()
        for thread in self._threads:
            thread.join(5)

    # events -------------------------------------------------------------------------------------

    def _on_check(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name", ""))
        ours = (obj.get("spec") or {}).get("controllerName") == self.controller_name
        with self._lock:
            known = name in self._checks
            if ours and kind != "DELETED":
                self._checks.add(name)
            else:
                self._checks.discard(name)
            workloads = list(self._workloads) if ours and not known else []
        if ours and kind != "DELETED":
            self.queue.add(f"check/{name}")
        for key in workloads:  # a check that became ours: whatever waits on it is due now
            self.queue.add(key)

    def _on_workload(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = f"workload/{meta.get('namespace')}/{meta.get('name')}"
        with self._lock:
            if kind == "DELETED":
                self._workloads.discard(key)
                return
            self._workloads.add(key)
            ours = set(self._checks)
        if checks.awaiting(obj, ours):
            self.queue.add(key)

    # processing ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stop_event.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                self._process(key)
                self._failures.pop(key, None)
            except ApiException as exc:
                if exc.status == 409:  # changed since read: read it again and decide afresh
                    self.queue.add_after(key, 0.05)
                else:
                    self._backoff(key, f"API server answered {exc.status}: {str(exc.body)[:300]}")
            except Exception as exc:
                self._backoff(key, repr(exc)[:300])
            finally:
                self.queue.done(key)

    def _backoff(self, key: str, why: str) -> None:
        n = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(60.0, 0.2 * 2**n)
        log.warning("%s failed (%s); again in %.1f s", key, why, delay)
        self.queue.add_after(key, delay)

    def _process(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        if kind == "platform":
            for obj in self.platform:
                self.adapter.apply(obj, field_manager=FIELD_MANAGER)
            log.info("applied %d platform Kueue objects", len(self.platform))
        elif kind == "check":
            self.reconcile_check(rest)
        elif kind == "workload":
            namespace, _, name = rest.partition("/")
            self.reconcile_workload(namespace, name)

    def _get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        meta = {"name": name, **({"namespace": namespace} if namespace else {})}
        return self.adapter.get({"apiVersion": API_VERSION, "kind": kind, "metadata": meta})

    def reconcile_check(self, name: str) -> None:
        check = self._get("AdmissionCheck", name)
        if check is None or (check.get("spec") or {}).get("controllerName") != self.controller_name:
            return
        generation = (check.get("metadata") or {}).get("generation", 0)
        if (check.get("spec") or {}).get("parameters"):
            wanted = {
                "status": "False",
                "reason": "BadParametersRef",
                "message": "the gpupaas check takes no parameters",
            }
        else:
            wanted = {"status": "True", "reason": "Active", "message": "the gpupaas PDP decides this check"}
        conditions = (check.get("status") or {}).get("conditions") or ()
        current: dict[str, Any] = next((c for c in conditions if c.get("type") == "Active"), {})
        if (
            all(current.get(k) == v for k, v in wanted.items())
            and current.get("observedGeneration") == generation
        ):
            return
        moved = current.get("status") != wanted["status"] or not current.get("lastTransitionTime")
        condition = {
            "type": "Active",
            **wanted,
            "observedGeneration": generation,
            "lastTransitionTime": _now() if moved else current["lastTransitionTime"],
        }
        body = {
            "apiVersion": API_VERSION,
            "kind": "AdmissionCheck",
            "metadata": {"name": name},
            "status": {"conditions": [condition]},
        }
        self.adapter.apply(body, field_manager=FIELD_MANAGER, subresource="status")
        log.info("AdmissionCheck %s: Active=%s", name, wanted["status"])

    def reconcile_workload(self, namespace: str, name: str) -> None:
        workload = self._get("Workload", name, namespace)
        if workload is None:
            return
        with self._lock:
            ours = set(self._checks)
        for entry in checks.awaiting(workload, ours):
            desired = self.decide(workload, entry)
            if not checks.differs(entry, desired):
                continue
            body = checks.status_apply(workload, desired, _now())
            self.adapter.apply(body, field_manager=FIELD_MANAGER, subresource="status")
            log.info("Workload %s/%s: check %s %s", namespace, name, desired["name"], desired["state"])
            # The write moved the resourceVersion: a second entry of ours is written after a fresh read.
            self.queue.add(f"workload/{namespace}/{name}")
            return

    def _flavors(self, workload: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        admission = (workload.get("status") or {}).get("admission") or {}
        names = {
            str(f)
            for a in admission.get("podSetAssignments") or ()
            for f in (a.get("flavors") or {}).values()
        }
        return {n: self._get("ResourceFlavor", n) or {} for n in sorted(names)}

    def decide(self, workload: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
        """The check's entry for the Workload: decided by the PDP, or Rejected when the Workload
        cannot be turned into an intent, or Retry when the PDP cannot be asked."""
        check = str(entry["name"])
        meta = workload.get("metadata") or {}
        subject = f"workload {meta.get('namespace')}/{meta.get('name')}"
        try:
            podsets = checks.podset_intents(workload, self._flavors(workload))
            todo = [p for p in podsets if p.intent is not None]
            decisions = self.decider.decide([p.intent for p in todo if p.intent is not None]) if todo else []
        except (InvalidObject, InvalidIntent) as exc:
            return {
                "name": check,
                "state": "Rejected",
                "message": f"gpupaas cannot evaluate {subject}: {exc}",
            }
        except PdpUnavailable as exc:
            return checks.retry_entry(check, subject, str(exc), int(entry.get("retryCount") or 0), self.retry)
        self.decisions += len(decisions)
        by_podset = dict(zip((p.podset for p in todo), decisions, strict=True))
        decided = [(p, by_podset.get(p.podset)) for p in podsets]
        return checks.check_entry(
            check, workload, decided, retry_count=int(entry.get("retryCount") or 0), retry=self.retry
        )
