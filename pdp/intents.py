"""Validation of intents, the input of every decision (schemas/intent.schema.json).

A malformed intent is refused before any policy runs, with the path of the offending field, so
a caller never gets a DENY that is really a typo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pdp.schemas import fast_intent_check, intent_validator, validator
from pdp.schemas.errors import describe, echo, format_path, leaf_errors

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

KINDS = (
    "create_tenant",
    "deploy_model",
    "scale",
    "change_batch_size",
    "request_gpu_sharing",
    "update_quotas",
    "offboard_tenant",
    "admit_workload",
    "place_workload",
    "preempt",
    "change_sla",
    "change_capacity",
    "reclaim",
    "degrade",
    "sla_breach",
    "remediate_drift",
)


class InvalidIntent(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _first_error(
    schema: str | Draft202012Validator, document: Any, prefix: list[str | int]
) -> InvalidIntent | None:
    check = validator(schema) if isinstance(schema, str) else schema
    errors = leaf_errors(check.iter_errors(document))
    if not errors:
        return None
    # The shallowest error first: a missing "kind" explains more than what follows from it.
    error = min(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
    path, problem = describe(error)
    return InvalidIntent(format_path([*prefix, *path]), problem)


def validate_intent(intent: Any, *, prefix: list[str | int] | None = None) -> Mapping[str, Any]:
    """Return `intent` unchanged if it is well formed; raise InvalidIntent naming the field otherwise."""
    prefix = prefix or []
    if not isinstance(intent, Mapping):
        raise InvalidIntent(format_path(prefix), "must be a JSON object")
    kind = intent.get("kind")
    fast = fast_intent_check(kind) if kind in KINDS else None
    if fast is None or not fast(intent):
        error = _first_error(intent_validator(kind) if kind in KINDS else "intent", intent, prefix)
        if error:
            raise error
    if intent["kind"] == "create_tenant":
        policy = intent["create_tenant"]["policy"]
        error = _first_error("tenant", {"tenant": policy}, [*prefix, "create_tenant", "policy"])
        if error:
            # The tenant schema's paths start at "tenant"; the intent carries the inner object.
            field = error.field.replace("create_tenant.policy.tenant", "create_tenant.policy", 1)
            raise InvalidIntent(field, error.problem)
        if policy["name"] != intent["tenant"]:
            raise InvalidIntent(
                format_path([*prefix, "tenant"]),
                f"is {echo(intent['tenant'])} but the policy names tenant {echo(policy['name'])}",
            )
    return intent
