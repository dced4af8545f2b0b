"""Reaching a tenant's clusters from a workflow: an unreachable cluster never makes a workflow
skip it. `reach` waits, records why the workflow is paused (`cluster.unreachable`, with the cluster
and the error) and resumes when the cluster answers (`cluster.reachable`, with how long it
waited), each record with the workflow and the decision that allowed the call; `of_tenant` names
the clusters a tenant is realized in (pdp/lifecycle/clusters.py keeps the adapters and the pauses).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from pdp.lifecycle import test_faults
from pdp.lifecycle.clusters import SINGLE, Pause
from pdp.lifecycle.runtime import Runtime
from pdp.substrate.base import Adapter

T = TypeVar("T")
log = logging.getLogger("pdp.lifecycle.clusters")  # the logger these lines always had


def reach(
    rt: Runtime,
    cluster: str,
    operation: str,
    call: Callable[[Adapter], T],
    *,
    tenant: str,
    event_key: str,
    workflow_id: str,
    decision_id: str,
    undecided: str = "",
) -> T:
    """`call(adapter of cluster)`, waiting as long as the cluster is unreachable (never skipping
    it), with the pause and the resumption in the audit trail.

    `decision_id`: the decision that allowed the call. A call no PDP decision allows (incident
    response acting on a fault report) passes "" and says why in `undecided`: the records then say
    `"decision": "none: <why>"`, so an empty decision id is never merely missing."""
    if not decision_id and not undecided:
        raise ValueError(f"{operation} in cluster {cluster!r}: neither a decision id nor why there is none")
    said = {} if decision_id else {"decision": f"none: {undecided}"}
    adapter = rt.clusters.adapter(cluster)
    started: float | None = None
    token = (event_key, cluster, operation)
    while True:
        try:
            test_faults.cluster_call(token)
            result = call(adapter)
        except ConnectionError as exc:
            if started is None:
                started = time.monotonic()
                since = datetime.now(UTC).isoformat()
                pause = Pause(cluster or "(the cluster)", operation, tenant, workflow_id, str(exc), since)
                rt.clusters.set_pause(token, pause)
                log.warning("%s of %s paused: cluster %s unreachable: %s", operation, tenant, cluster, exc)
                rt.store.record(
                    f"{event_key}:cluster.unreachable:{cluster}:{operation}:{since}",
                    event="cluster.unreachable",
                    tenant=tenant,
                    workflow_id=workflow_id,
                    decision_id=decision_id,
                    detail={
                        "cluster": cluster,
                        "operation": operation,
                        "reason": str(exc),
                        "paused": True,
                        **said,
                    },
                )
            time.sleep(rt.settings.cluster_retry_interval)
            continue
        if started is not None:
            waited = round(time.monotonic() - started, 1)
            rt.clusters.set_pause(token, None)
            log.warning(
                "%s of %s resumed: cluster %s reachable after %.1f s", operation, tenant, cluster, waited
            )
            rt.store.record(
                f"{event_key}:cluster.reachable:{cluster}:{operation}:{datetime.now(UTC).isoformat()}",
                event="cluster.reachable",
                tenant=tenant,
                workflow_id=workflow_id,
                decision_id=decision_id,
                detail={"cluster": cluster, "operation": operation, "paused_seconds": waited, **said},
            )
        return result


def of_tenant(rt: Runtime, tenant: str) -> list[str]:
    """The clusters the tenant is realized in (SINGLE when not managed)."""
    if not rt.clusters.managed:
        return [SINGLE]
    found = rt.store.clusters(tenant)
    if not found:
        raise RuntimeError(f"tenant {tenant!r} is realized in no cluster this worker records")
    return found
