"""Re-placement of running deployments: ask the PDP for a fresh placement under the policy in
force now and move the workload object when the placement changed (SLA and sharing changes,
incidents, drift remediation), and the compensation that puts the old placements back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.services.realize import (
    NoEligibleCluster,
    apply_placement,
    choose_cluster,
    cluster_of,
    in_cluster,
    leave,
    links,
    running_deployment,
)
from pdp.substrate.kubernetes import objects, workload


class ReplacementRefused(RuntimeError):
    """The PDP refuses the fresh placement of a running deployment."""


def decide_again(
    rt: Runtime,
    tenant: str,
    dep: Mapping[str, Any],
    *,
    actor: str,
    cause: str,
    sharing: str | None,
    event_key: str,
    workflow_id: str,
) -> dict[str, Any]:
    """The PDP's decision on a running deployment under the policy in force now (with `sharing`,
    a new sharing mode), recorded as the decision of its replacement for `cause`."""
    intent = workload.deploy_intent(tenant, dep["spec"], rt.store.usage(tenant), actor, sharing)
    decision = rt.policy.decide(intent)
    rt.store.record(
        f"{event_key}:decision:{decision['decision_id']}",
        event="decision",
        tenant=tenant,
        actor=actor,
        workflow_id=workflow_id,
        detail={"kind": "deploy_model", "outcome": decision["outcome"], "reasons": decision["reasons"],
                "replacement_of": dep["name"], "cause": cause},
        **links(decision),
    )  # fmt: skip
    return decision


def replace(
    rt: Runtime,
    tenant: str,
    name: str,
    *,
    actor: str,
    cause: str,
    sharing: str | None,
    strict: bool,
    event_key: str,
    workflow_id: str,
) -> dict[str, Any]:
    """Ask the PDP for a fresh placement of one running deployment under the policy in force now
    (with `sharing`, its new sharing mode) and re-apply its object when the placement moved.

    A refusal raises ReplacementRefused when `strict` (an SLA change must move every workload or
    none); otherwise the deployment keeps its placement and the refusal is reported."""
    dep = running_deployment(rt, tenant, name)
    if dep is None:
        return {"deployment": name, "replaced": False, "reason": "not running"}
    decision = decide_again(
        rt,
        tenant,
        dep,
        actor=actor,
        cause=cause,
        sharing=sharing,
        event_key=event_key,
        workflow_id=workflow_id,
    )
    codes = [r["code"] for r in decision["reasons"]]
    out: dict[str, Any] = {"deployment": name, "outcome": decision["outcome"], "reason_codes": codes}
    out.update(links(decision))
    if decision["outcome"] == "DENY":
        if strict:
            raise ReplacementRefused(
                f"{tenant}/{name}: the PDP refuses its new placement: {', '.join(codes)}"
            )
        return {**out, "replaced": False, "reason": "kept: " + ", ".join(codes)}
    kept = rt.store.workloads(tenant).get(name)
    if kept is not None and kept.get("event_key") == event_key:
        return {**out, "replaced": True}  # this step ran already (re-run after a crash)
    spec = {**dep["spec"], "sharing": sharing} if sharing else dep["spec"]
    try:
        cluster = choose_cluster(rt, tenant, spec, decision, cluster_of(kept) if kept else None)
    except NoEligibleCluster as exc:
        if strict:
            raise ReplacementRefused(str(exc)) from exc
        return {**out, "replaced": False, "reason": f"kept: {exc}"}
    place = workload.placement(
        decision.get("constraints", {}), rt.policy.fleet, str(spec.get("sharing", "none")), cluster
    )
    if kept is not None and kept["placement"] == place:
        return {**out, "replaced": False, "reason": "placement unchanged"}
    if spec != dep["spec"]:
        rt.store.put_deployment(
            tenant,
            name,
            dep["state"],
            spec,
            event_key=f"{event_key}:spec",
            workflow_id=workflow_id,
            **links(decision),
        )
    before = kept["placement"] if kept else {}
    changed = sorted(k for k in place if before.get(k) != place[k])
    apply_placement(
        rt,
        tenant,
        spec,
        place,
        decision,
        running=True,
        event_key=event_key,
        event="deployment.replaced",
        workflow_id=workflow_id,
        because=decision,
        detail={"cause": cause, "changed": changed, "from": before, "to": place},
    )
    if kept is not None and cluster_of(kept) != cluster:
        # Moved to another cluster: the object in the one it left goes, once the new one is applied.
        leave(rt, tenant, kept, event_key=f"{event_key}:left", workflow_id=workflow_id,
              decision_id=links(decision)["decision_id"])  # fmt: skip
    return {**out, "replaced": True, "changed": changed}


def restore_workloads(
    rt: Runtime,
    tenant: str,
    before: Mapping[str, Mapping[str, Any]],
    decision: Mapping[str, Any],
    *,
    event_key: str,
    workflow_id: str,
) -> list[str]:
    """Compensation: put back the objects (and placements) of `before` that have changed since."""
    now = rt.store.workloads(tenant)
    ids = links(decision)["decision_id"]
    restored = []
    for name, old in before.items():
        current = now.get(name)
        if current is not None and current["placement"] == old["placement"]:
            continue
        obj = old["object"]
        in_cluster(rt, tenant, cluster_of(old), "restore workload", lambda a, o=obj: a.apply(o),
            event_key=f"{event_key}:{name}", workflow_id=workflow_id, decision_id=ids)  # fmt: skip
        if current is not None and cluster_of(current) != cluster_of(old):
            leave(rt, tenant, current, event_key=f"{event_key}:{name}:left", workflow_id=workflow_id,
                  decision_id=ids)  # fmt: skip
        rt.store.put_workload(
            tenant,
            name,
            dict(old),
            event_key=f"{event_key}:{name}",
            event="deployment.replacement_reverted",
            detail={"deployment": name, "object": objects.key(old["object"]), "to": old["placement"]},
            workflow_id=workflow_id,
            **links(decision),
        )
        restored.append(name)
    return restored
