"""The PDP's Kueue admission check, as pure functions: which Workloads wait for it, the intents
their PodSets make, and the check state a set of decisions becomes.

A PodSet is judged as it will run: its pod template with the node labels and tolerations of the
ResourceFlavors Kueue assigned to it merged in (Kueue merges them into the pods when it starts the
job), its GPUs times the pods admitted. The answer goes back in the Workload's
`status.admissionChecks` entry of the check:

- every PodSet allowed: `Ready`, with a `podSetUpdates` entry per decided PodSet carrying the
  decision's placement (node selector for the GPU class, region, pool and dedicated tenant,
  the dedicated pool's toleration) and its provenance (decision id and bundle revision as labels
  and annotations of the pods);
- a policy denial or a need for approval (admission cannot wait for one): `Rejected`, final, with
  the reason codes, the tenant, the bundle revision and the decision id in the message;
- the engine could not decide (`Decision.engine_failed`, or the PDP unreachable): `Retry` with a
  backoff, never `Ready`: Kueue releases the quota and queues the workload again.

Decisions are `pdp.decision.Decision`s, as at every enforcement point; reasons and provenance read
in the messages as they do in Kubernetes admission's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pdp.decision import Decision, Outcome
from pdp.substrate.kubernetes.enforcement.workloads import needs_policy, workload_from_object
from pdp.substrate.kueue.version import API_VERSION
from pdp.substrate.labels import POOL_LABEL

DECISION_LABEL = "gpupaas.io/decision-id"
DECISION_CONDITION = "gpupaas.io/PolicyDecision"
CONDITION_REASONS = {"Ready": "Allowed", "Rejected": "Denied", "Retry": "NotDecided"}
REVISION_LABEL = "gpupaas.io/bundle-revision"
ACTOR = "kueue"
MAX_MESSAGE = 4096  # the API allows 32768; a message is for people, and is cut well before that

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: int = 10
    max_seconds: int = 300

    def delay(self, retry_count: int) -> int:
        return int(min(self.max_seconds, self.base_seconds * 2 ** max(0, min(retry_count, 16))))


@dataclass(frozen=True)
class PodSetIntent:
    podset: str
    template: Mapping[str, Any]  # the pod template's spec, with the flavors merged in
    intent: dict[str, Any] | None  # None: asks for no GPU and crosses no constraint


def _conditions(workload: Mapping[str, Any]) -> dict[str, str]:
    status = workload.get("status") or {}
    return {str(c.get("type")): str(c.get("status")) for c in status.get("conditions") or ()}


def awaiting(workload: Mapping[str, Any], checks: set[str]) -> list[dict[str, Any]]:
    """The entries of `checks` this Workload waits on: it holds quota, is neither finished nor
    evicted nor deactivated, and the entry is Pending."""
    conditions = _conditions(workload)
    if conditions.get("QuotaReserved") != "True":
        return []
    if conditions.get("Finished") == "True" or conditions.get("Evicted") == "True":
        return []
    if (workload.get("spec") or {}).get("active") is False:
        return []
    entries = (workload.get("status") or {}).get("admissionChecks") or ()
    return [dict(e) for e in entries if e.get("name") in checks and e.get("state") == "Pending"]


def _assignments(workload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    admission = (workload.get("status") or {}).get("admission") or {}
    return {str(a.get("name")): a for a in admission.get("podSetAssignments") or ()}


def _priority_class(workload: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> str:
    ref = (workload.get("spec") or {}).get("priorityClassRef") or {}
    return str(ref.get("name") or pod_spec.get("priorityClassName") or "")


def merged_template(
    pod_spec: Mapping[str, Any], flavor_names: Sequence[str], flavors: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The pod spec with the assigned flavors' node labels and tolerations, as Kueue will start it
    (the template's own values win a key both set; Kueue refuses to start such a job anyway)."""
    spec = dict(pod_spec)
    selector: dict[str, Any] = {}
    tolerations = list(spec.get("tolerations") or [])
    for name in flavor_names:
        flavor = (flavors.get(name) or {}).get("spec") or {}
        selector.update(flavor.get("nodeLabels") or {})
        tolerations += [t for t in flavor.get("tolerations") or () if t not in tolerations]
    selector.update(spec.get("nodeSelector") or {})
    if selector:
        spec["nodeSelector"] = selector
    if tolerations:
        spec["tolerations"] = tolerations
    return spec


def podset_intents(
    workload: Mapping[str, Any], flavors: Mapping[str, Mapping[str, Any]]
) -> list[PodSetIntent]:
    """One `admit_workload` intent per PodSet that asks for GPUs or reaches for a platform
    constraint. Raises pdp.substrate.kubernetes.enforcement.workloads.InvalidObject naming the
    field of a malformed PodSet."""
    meta = workload.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    assignments = _assignments(workload)
    out = []
    for podset in (workload.get("spec") or {}).get("podSets") or ():
        ps_name = str(podset.get("name", "main"))
        assignment = assignments.get(ps_name) or {}
        count = assignment.get("count", podset.get("count", 1))
        template = (podset.get("template") or {}).get("spec") or {}
        spec = merged_template(template, sorted(set((assignment.get("flavors") or {}).values())), flavors)
        payload = workload_from_object(
            {"kind": "Pod", "metadata": {"name": f"{name}/{ps_name}"}, "spec": spec}, namespace
        )
        payload["kind"] = "Workload"
        if payload.get("resources"):
            payload["resources"] = {r: n * int(count) for r, n in payload["resources"].items()}
        priority = _priority_class(workload, template)
        if priority:
            payload["priority_class_name"] = priority
        intent = {"kind": "admit_workload", "actor": ACTOR, "admit_workload": payload}
        out.append(PodSetIntent(ps_name, spec, intent if needs_policy(payload) else None))
    return out


def placement_update(podset: str, template: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The podSetUpdate of an allowed PodSet: the decision's placement, without the keys and
    tolerations the pods carry already (Kueue refuses to start a job whose update changes a value
    the template sets), and its provenance."""
    constraints = decision.constraints
    selector = {str(k): str(v) for k, v in (constraints.get("node_selector") or {}).items()}
    for req in constraints.get("node_affinity") or ():
        # A node selector holds one value per key: a single allowed region is pinned here; more
        # than one stays with the pod webhook and the scheduler extender, which judge every pod.
        if req.get("operator") == "In" and len(req.get("values") or ()) == 1:
            selector.setdefault(str(req["key"]), str(req["values"][0]))
    isolation = constraints.get("isolation") or {}
    pools = list(isolation.get("dedicated_pools") or ()) if isolation.get("mode") == "dedicated" else []
    if len(pools) == 1:
        selector.setdefault(POOL_LABEL, str(pools[0]))
    present = template.get("nodeSelector") or {}
    selector = {k: v for k, v in selector.items() if k not in present}
    have = list(template.get("tolerations") or ())
    tolerations = [dict(t) for t in constraints.get("tolerations") or () if t not in have]
    provenance = {
        DECISION_LABEL: decision.decision_id,
        REVISION_LABEL: decision.bundle_revision,
    }
    update: dict[str, Any] = {
        "name": podset,
        "labels": {k: v for k, v in provenance.items() if v and len(v) <= 63 and _LABEL_VALUE.fullmatch(v)},
        "annotations": {k: v for k, v in provenance.items() if v},
    }
    if selector:
        update["nodeSelector"] = dict(sorted(selector.items()))
    if tolerations:
        update["tolerations"] = tolerations
    return {k: v for k, v in update.items() if v or k == "name"}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def retry_entry(check: str, subject: str, why: str, retry_count: int, retry: RetryPolicy) -> dict[str, Any]:
    delay = retry.delay(retry_count)
    return {
        "name": check,
        "state": "Retry",
        "message": _cut(f"gpupaas could not decide {subject}, failing closed: {why}; again in {delay} s"),
        "requeueAfterSeconds": delay,
    }


def check_entry(
    check: str,
    workload: Mapping[str, Any],
    decided: Sequence[tuple[PodSetIntent, Decision | None]],
    *,
    retry_count: int = 0,
    retry: RetryPolicy = RetryPolicy(),
) -> dict[str, Any]:
    """The check's entry (without lastTransitionTime) for the decisions on the PodSets."""
    meta = workload.get("metadata") or {}
    subject = f"workload {meta.get('namespace')}/{meta.get('name')}"
    decisions = [(ps, d) for ps, d in decided if d is not None]
    failed = [d for _, d in decisions if d.engine_failed]
    if failed:
        why = f"{failed[0].explanation()} {failed[0].provenance()}"
        return retry_entry(check, subject, why, retry_count, retry)
    for ps, d in decisions:
        where = f"{subject} podset {ps.podset}"
        if d.outcome is Outcome.DENY:
            return {
                "name": check,
                "state": "Rejected",
                "message": _cut(f"gpupaas denied {where}: {d.explanation()} {d.provenance()}"),
            }
        if d.outcome is not Outcome.ALLOW:
            return {
                "name": check,
                "state": "Rejected",
                "message": _cut(
                    f"gpupaas: {where} needs approval, which admission cannot wait for: "
                    f"{d.explanation()} {d.provenance()}"
                ),
            }
    updates = [placement_update(ps.podset, ps.template, d) for ps, d in decisions]
    ids = ", ".join(f"{ps.podset}: {d.decision_id}" for ps, d in decisions) or "no GPU asked for"
    revision = next((d.bundle_revision for _, d in decisions), "") or "-"
    entry: dict[str, Any] = {
        "name": check,
        "state": "Ready",
        "message": _cut(f"gpupaas allowed {subject} (bundle {revision}, decisions {ids})"),
    }
    if updates:
        entry["podSetUpdates"] = updates
    return entry


_COMPARED = ("state", "message", "podSetUpdates", "requeueAfterSeconds")


def differs(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    return any(current.get(k) != desired.get(k) for k in _COMPARED)


def decision_condition(workload: Mapping[str, Any], entry: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The PDP's own condition on the Workload, saying what the check decided and why. Kueue resets
    a check entry to Pending when it evicts or deactivates the Workload ("Reset to Pending after
    eviction. Previously: Rejected"), so the reason codes would be gone from the object; this
    condition keeps them there until the next decision."""
    status = "True" if entry["state"] == "Ready" else "False"
    conditions = (workload.get("status") or {}).get("conditions") or ()
    current: dict[str, Any] = next((c for c in conditions if c.get("type") == DECISION_CONDITION), {})
    moved = current.get("status") != status or not current.get("lastTransitionTime")
    return {
        "type": DECISION_CONDITION,
        "status": status,
        "reason": CONDITION_REASONS[str(entry["state"])],
        "message": entry["message"],
        "observedGeneration": (workload.get("metadata") or {}).get("generation", 0),
        "lastTransitionTime": now if moved else current["lastTransitionTime"],
    }


def status_apply(workload: Mapping[str, Any], entry: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The server-side apply body of the Workload's status holding only this check's entry and
    the PDP's condition. The uid and resourceVersion make it a precondition: a Workload that
    changed since it was read (or was replaced under the same name) is not written, it is read
    and decided again."""
    meta = workload.get("metadata") or {}
    current: dict[str, Any] = next(
        (
            e
            for e in (workload.get("status") or {}).get("admissionChecks") or ()
            if e.get("name") == entry["name"]
        ),
        {},
    )
    moved = current.get("state") != entry["state"] or not current.get("lastTransitionTime")
    return {
        "apiVersion": API_VERSION,
        "kind": "Workload",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "status": {
            "admissionChecks": [
                {**entry, "lastTransitionTime": now if moved else current["lastTransitionTime"]}
            ],
            "conditions": [decision_condition(workload, entry, now)],
        },
    }
