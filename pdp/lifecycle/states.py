"""Explicit state machines for tenants and deployments.

The tables below are the single source of truth: the store refuses any transition they do not
list, and scripts/gen-state-diagrams renders them into docs/lifecycle.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class TenantState(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    OFFBOARDING = "offboarding"
    OFFBOARDED = "offboarded"
    FAILED = "failed"


class DeploymentState(StrEnum):
    REQUESTED = "requested"
    RUNNING = "running"
    QUEUED = "queued"
    PREEMPTED = "preempted"
    DRAINED = "drained"
    REJECTED = "rejected"


TENANT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    TenantState.PENDING: frozenset({TenantState.PROVISIONING, TenantState.FAILED}),
    TenantState.PROVISIONING: frozenset({TenantState.ACTIVE, TenantState.FAILED}),
    TenantState.ACTIVE: frozenset({TenantState.SUSPENDED, TenantState.OFFBOARDING}),
    TenantState.SUSPENDED: frozenset({TenantState.ACTIVE, TenantState.OFFBOARDING}),
    TenantState.OFFBOARDING: frozenset({TenantState.OFFBOARDED}),
    TenantState.OFFBOARDED: frozenset(),
    # A failed onboarding has been compensated; the only way on is to start over.
    TenantState.FAILED: frozenset({TenantState.PENDING}),
}

DEPLOYMENT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    DeploymentState.REQUESTED: frozenset(
        {DeploymentState.RUNNING, DeploymentState.QUEUED, DeploymentState.REJECTED}
    ),
    # Queued work is placed by the queue retry, refused by policy on a retry, or dropped when its
    # tenant is offboarded.
    DeploymentState.QUEUED: frozenset(
        {DeploymentState.RUNNING, DeploymentState.REJECTED, DeploymentState.DRAINED}
    ),
    DeploymentState.RUNNING: frozenset({DeploymentState.PREEMPTED, DeploymentState.DRAINED}),
    # A preempted deployment goes back to the queue at once, to resume when capacity returns
    # (drained covers rows preempted before re-queueing existed).
    DeploymentState.PREEMPTED: frozenset({DeploymentState.QUEUED, DeploymentState.DRAINED}),
    DeploymentState.DRAINED: frozenset(),
    DeploymentState.REJECTED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, machine: str, subject: str, from_state: str, to_state: str, allowed: frozenset[str]):
        self.machine, self.subject = machine, subject
        self.from_state, self.to_state, self.allowed = from_state, to_state, allowed
        targets = ", ".join(sorted(allowed)) or "none (final state)"
        super().__init__(
            f"illegal {machine} transition for {subject!r}: {from_state} -> {to_state}; "
            f"allowed from {from_state}: {targets}"
        )


@dataclass(frozen=True)
class Machine:
    name: str
    initial: str
    transitions: Mapping[str, frozenset[str]]

    def check(self, subject: str, from_state: str, to_state: str) -> None:
        """Raise IllegalTransition unless from_state -> to_state is in the table."""
        allowed = self.transitions.get(from_state, frozenset())
        if to_state not in allowed:
            raise IllegalTransition(self.name, subject, from_state, to_state, allowed)

    def mermaid(self) -> str:
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial}"]
        for src in self.transitions:
            targets = sorted(self.transitions[src])
            lines += [f"    {src} --> {dst}" for dst in targets]
            if not targets:
                lines.append(f"    {src} --> [*]")
        return "\n".join(lines)


TENANT = Machine("tenant", TenantState.PENDING, TENANT_TRANSITIONS)
DEPLOYMENT = Machine("deployment", DeploymentState.REQUESTED, DEPLOYMENT_TRANSITIONS)
MACHINES = (TENANT, DEPLOYMENT)
