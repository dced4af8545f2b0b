"""What the product's console asks the lifecycle: one function per question, so lane 1 reads the
lifecycle's state and asks for previews through lane 2's services, never through the runtime.

Each answers from the runtime the worker installed (pdp/lifecycle/runtime.py), at call time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbos import DBOS

from pdp.embedded import EmbeddedPDP
from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.runtime import current
from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.credentials import Unauthenticated

__all__ = [
    "Unauthenticated",
    "approvals",
    "audit_records",
    "authenticate",
    "decide",
    "deployments",
    "fleet",
    "pdp",
    "prometheus_url",
    "tenant",
    "usage",
    "workflow_statuses",
    "workloads",
]


def authenticate(token: str) -> Principal:
    """Who holds `token`; raises Unauthenticated for an unknown, expired or revoked one."""
    return current().store.credentials.authenticate(token)


def authenticate_id(token_id: str) -> Principal:
    """Who holds the token named `token_id`; Unauthenticated once it expired or was revoked (a
    rotation revokes the earlier tokens)."""
    return current().store.credentials.authenticate_id(token_id)


def tenant(name: str) -> dict[str, Any]:
    return current().store.tenant(name)


def deployments(tenant: str) -> list[dict[str, Any]]:
    return current().store.deployments(tenant)


def workloads(tenant: str) -> dict[str, dict[str, Any]]:
    return current().store.workloads(tenant)


def usage(tenant: str) -> dict[str, int]:
    """GPUs the tenant holds now, per class."""
    return current().store.usage(tenant)


def approvals(tenant: str | None = None, open_only: bool = True) -> list[dict[str, Any]]:
    return current().store.approvals(tenant, open_only=open_only)


def audit_records(tenant: str | None = None) -> list[dict[str, Any]]:
    """The audit trail in order (one tenant's records when `tenant` is given)."""
    return list(audit.records(current().db, tenant))


def fleet() -> dict[str, Any]:
    """The fleet the bundle OPA serves carries."""
    return current().policy.fleet


def decide(intent: Mapping[str, Any]) -> dict[str, Any]:
    """The PDP's decision on `intent`, asked as the product API's check asks it."""
    return current().policy.decide(intent)


def pdp() -> EmbeddedPDP:
    """The PDP the lifecycle decides with: its bundle status, history and decision log."""
    return current().policy.stack


def prometheus_url() -> str:
    """The Prometheus the worker reads (`--prometheus`), or "" when it reads none."""
    return current().settings.prometheus_url


def workflow_statuses(prefix: str) -> dict[str, str]:
    """The DBOS status (PENDING, SUCCESS, ERROR, ...) of each workflow whose id starts with
    `prefix`: what a workflow's audit records cannot say, that it ended without writing its last."""
    found = DBOS.list_workflows(workflow_id_prefix=prefix, load_input=False, load_output=False)
    return {str(w.workflow_id): str(w.status) for w in found}
