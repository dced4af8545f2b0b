"""Pure translation between the gRPC messages and the intent/decision documents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp.decision import Decision
from pdp.intents import KINDS, InvalidIntent
from pdp.schemas.errors import shorten

# Kinds whose zero-valued numbers are meaningful (scaling from or to 0 replicas, no idle GPU, an
# unloaded pool).
_KEEP_ZEROES = {"scale", "offboard_tenant", "reclaim", "sla_breach"}


def _integral(value: Any) -> Any:
    """google.protobuf.Struct holds every number as a double; give whole numbers back as int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _as_dict(message: Message, *, keep_zeroes: bool = False) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=keep_zeroes,
    )


def _workload(message: pb.Workload) -> dict[str, Any]:
    out = _as_dict(message)
    if "node_affinity" in out:
        out["node_affinity"] = [term.get("requirements", []) for term in out["node_affinity"]]
    return out


def intent_from_proto(message: pb.Intent) -> dict[str, Any]:
    """The intent document (docs/decision-contract.md) a gRPC Intent stands for."""
    kind = message.WhichOneof("action")
    if kind is None:
        raise InvalidIntent("action", f"is required: set one of {', '.join(KINDS)}")
    intent: dict[str, Any] = {"kind": kind}
    if message.tenant:
        intent["tenant"] = message.tenant
    if message.actor:
        intent["actor"] = message.actor
    if message.usage:
        intent["usage"] = dict(message.usage)
    payload = getattr(message, kind)
    if kind == "create_tenant":
        intent[kind] = {"policy": _integral(json_format.MessageToDict(payload.policy))}
    elif kind == "admit_workload":
        intent[kind] = _workload(payload)
    elif kind == "place_workload":
        intent[kind] = {
            **_workload(payload.workload),
            "nodes": [_as_dict(node) for node in payload.nodes],
        }
    else:
        intent[kind] = _as_dict(payload, keep_zeroes=kind in _KEEP_ZEROES)
    if kind == "change_capacity":
        # proto3 cannot tell an empty repeated field from an absent one; a plan without capacity
        # changes still has its (empty) list.
        intent[kind].setdefault("changes", [])
    return intent


def _plan(message: Message) -> dict[str, str]:
    """field name -> how to fill it, for the type of `message`."""
    plan: dict[str, str] = {}
    for field in message.DESCRIPTOR.fields:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            plan[field.name] = "map"
        elif nested is not None and nested.full_name == Struct.DESCRIPTOR.full_name:
            plan[field.name] = "struct"
        elif field.is_repeated:
            plan[field.name] = "messages" if nested is not None else "scalars"
        else:
            plan[field.name] = "message" if nested is not None else "scalar"
    return plan


_PLANS: dict[str, dict[str, str]] = {}


def _fill(message: Message, doc: Mapping[str, Any]) -> None:
    """Set `message` from a document whose keys are the proto field names, ignoring unknown keys
    (the decision contract may grow before the proto does). json_format.ParseDict does the same
    in pure Python; this walks a plan built once per message type and was most of the cost of
    answering a decision (docs/performance.md)."""
    name = message.DESCRIPTOR.full_name
    plan = _PLANS.get(name)
    if plan is None:
        plan = _PLANS[name] = _plan(message)
    for key, value in doc.items():
        kind = plan.get(key)
        if kind is None or value is None:
            continue
        if kind == "scalar":
            setattr(message, key, value)
        elif kind == "scalars":
            getattr(message, key).extend(value)
        elif kind == "messages":
            container = getattr(message, key)
            for item in value:
                _fill(container.add(), item)
        elif kind == "message":
            _fill(getattr(message, key), value)
        else:  # map and struct
            getattr(message, key).update(value)


def _empty_collections(node: Any, prefix: str = "") -> list[str]:
    """The paths of the empty lists and maps in `node` (proto3 cannot tell them from absent)."""
    if not prefix and b"[]" not in (raw := orjson.dumps(node)) and b"{}" not in raw:
        return []  # the usual case, told by one serialization instead of a walk of every node
    return _walk_empty(node, prefix)


def _walk_empty(node: Any, prefix: str) -> list[str]:
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return []
    out: list[str] = []
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, dict | list) and not value:
            out.append(path)
        else:
            out += _walk_empty(value, f"{path}.")
    return out


def _restore_empty(doc: dict[str, Any], paths: list[str]) -> None:
    for path in paths:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        kind = _EMPTY_KIND.get(last, list)
        if isinstance(node, dict):
            node.setdefault(last, kind())


# Constraint fields that are maps in the decision document; every other collection is a list.
_EMPTY_KIND: dict[str, type] = {"node_selector": dict, "params": dict}


def decision_to_proto(decision: Decision) -> pb.Decision:
    message = pb.Decision(
        outcome=decision.outcome.value,
        reasons=[pb.Reason(code=r.code, message=r.message, policy=r.policy) for r in decision.reasons],
        warnings=[pb.Reason(code=r.code, message=r.message, policy=r.policy) for r in decision.warnings],
        bundle_revision=decision.bundle_revision,
        decision_id=decision.decision_id,
        tenant=decision.tenant,
        kind=decision.kind,
    )
    _fill(message.constraints, decision.constraints)
    message.constraints.empty_collections.extend(_empty_collections(decision.constraints))
    for obligation in decision.obligations:
        _fill(message.obligations.add(), obligation)
    message.decided_at.FromDatetime(decision.decided_at)
    message.evaluation_time.FromMicroseconds(round(decision.evaluation_ms * 1000))
    return message


def decision_from_proto(message: pb.Decision) -> dict[str, Any]:
    """A gRPC Decision as the same JSON document `Decision.to_dict` gives (for clients and the CLI)."""
    out = json_format.MessageToDict(message, preserving_proto_field_name=True)
    # proto3 leaves empty lists and messages out; Decision.to_dict always has them.
    for key in ("reasons", "warnings", "obligations"):
        out.setdefault(key, [])
    for key in ("tenant", "kind", "bundle_revision", "decision_id"):
        out.setdefault(key, "")
    constraints = out.setdefault("constraints", {})
    _restore_empty(constraints, constraints.pop("empty_collections", []))
    for obligation in out["obligations"]:
        obligation.setdefault("params", {})
    out["outcome"] = pb.Outcome.Name(message.outcome)
    out["evaluation_ms"] = message.evaluation_time.ToMicroseconds() / 1000
    out.pop("evaluation_time", None)
    return out


def intent_to_proto(intent: dict[str, Any]) -> pb.Intent:
    """The gRPC Intent for an intent document (the inverse of intent_from_proto)."""
    kind = intent.get("kind")
    if kind not in KINDS:
        raise InvalidIntent("kind", f"must be one of {', '.join(KINDS)}")
    message = pb.Intent(tenant=intent.get("tenant", ""), actor=intent.get("actor", ""))
    message.usage.update(intent.get("usage", {}))
    payload = dict(intent.get(kind) or {})
    target = getattr(message, kind)
    # An intent with nothing to say beyond its kind (offboard_tenant of a tenant) still chooses
    # its action: without this the oneof stays unset and the server answers "action: is required".
    target.SetInParent()
    try:
        if kind == "create_tenant":
            target.policy.update(payload.get("policy", {}))
        elif kind in ("admit_workload", "place_workload"):
            nodes = payload.pop("nodes", [])
            workload = target.workload if kind == "place_workload" else target
            if "node_affinity" in payload:
                payload["node_affinity"] = [{"requirements": t} for t in payload["node_affinity"]]
            json_format.ParseDict(payload, workload)
            if kind == "place_workload":
                for node in nodes:
                    json_format.ParseDict(node, target.nodes.add())
        else:
            json_format.ParseDict(payload, target)
    except json_format.ParseError as exc:
        raise InvalidIntent(kind, shorten(str(exc), 300)) from exc
    return message
