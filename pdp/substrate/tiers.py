"""What a tier lets a tenant use beyond its entitlement, which more than one substrate realizes:
Kueue lends a borrowing tenant idle quota of its cohort (kueue/objects.py), and its namespaces'
ResourceQuota and LimitRange must then leave room for the pods of what Kueue admitted
(kubernetes/objects.py), or the API server refuses them while Kueue holds their quota."""

from __future__ import annotations

# The `borrows` of the policy's tier table (lib.tiers in policies/gpupaas/lib/lib.rego), which
# tests/substrate/kueue/test_objects.py holds this table to.
TIER_BORROWS = {"enterprise": False, "standard": False, "spot": True}


def tenant_borrows(tier: str, allow_preemption: object) -> bool:
    """Whether a tenant of `tier` borrows idle quota beyond its entitlement: its tier borrows and it
    allows preemption (`allow_preemption: true`), as placement's `_borrows` lets it past its
    entitlement (policies/gpupaas/placement). An unknown tier has spot's rules."""
    return TIER_BORROWS.get(tier, TIER_BORROWS["spot"]) and allow_preemption is True
