"""Pure translation between the gRPC messages and the intent/decision documents."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
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


def _as_dict_reference(message: Message, *, keep_zeroes: bool = False) -> dict[str, Any]:
    """What `_as_dict` answers, by json_format (pure Python, walking every field per call)."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=keep_zeroes,
    )


# Field types a value of which json_format gives back unchanged (a Python str, int or bool); any
# other (floats, 64-bit integers, bytes, enums) is left to json_format.
_PLAIN_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_FIXED32,
    }
)
# Per message type: whether `_as_dict` may read it by ListFields (None: json_format must), and the
# fields without presence with their empty value, for keep_zeroes.
_SHAPES: dict[str, tuple[bool, list[tuple[str, Any]]] | None] = {}


def _shape(descriptor: Any) -> tuple[bool, list[tuple[str, Any]]] | None:
    name = descriptor.full_name
    if name in _SHAPES:
        return _SHAPES[name]
    _SHAPES[name] = None  # a recursive type is left to json_format
    defaults: list[tuple[str, Any]] = []
    for field in descriptor.fields:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            key, value = nested.fields_by_name["key"], nested.fields_by_name["value"]
            if key.type != FieldDescriptor.TYPE_STRING or value.type not in _PLAIN_TYPES:
                return None
            defaults.append((field.name, dict))
        elif nested is not None:
            if nested.file.package == "google.protobuf" or _shape(nested) is None:
                return None  # well-known types (Struct, Timestamp...) have their own JSON forms
            if field.is_repeated:
                defaults.append((field.name, list))
        elif field.type not in _PLAIN_TYPES:
            return None
        elif field.is_repeated:
            defaults.append((field.name, list))
        elif not field.has_presence:
            defaults.append((field.name, field.default_value))
    shape = (True, defaults)
    _SHAPES[name] = shape
    return shape


def _as_dict(message: Message, *, keep_zeroes: bool = False) -> dict[str, Any]:
    """The message as json_format.MessageToDict gives it with the proto field names (and
    `keep_zeroes`: fields without presence printed even when unset), read by ListFields, which
    lists only the fields set, in C. json_format walks every field in Python: this was most of
    the cost of reading an intent (docs/performance.md). Types with anything but strings,
    32-bit integers, booleans, string-keyed maps of those and nested such messages go to
    json_format; `tests/api/test_translate.py` holds the two equal."""
    shape = _shape(message.DESCRIPTOR)
    if shape is None:
        return _as_dict_reference(message, keep_zeroes=keep_zeroes)
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        nested = field.message_type
        if nested is None:
            out[field.name] = list(value) if field.is_repeated else value
        elif nested.GetOptions().map_entry:
            out[field.name] = dict(value)
        elif field.is_repeated:
            out[field.name] = [_as_dict(item, keep_zeroes=keep_zeroes) for item in value]
        else:
            out[field.name] = _as_dict(value, keep_zeroes=keep_zeroes)
    if keep_zeroes:
        for name, empty in shape[1]:
            if name not in out:
                out[name] = empty() if callable(empty) else empty
    return out


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
        if payload.held:
            intent[kind]["held"] = [
                {"resources": dict(h.resources), "on": [dict(n.labels) for n in h.on]} for h in payload.held
            ]
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Constraints documents already rendered, by their JSON: the documents of a fleet's decisions are
# few (one per tenant, kind and outcome, give or take), and filling a Constraints message walks
# every node of one. Cleared when full.
_CONSTRAINTS_CACHE_SIZE = 1024
_constraints_cache: dict[bytes, bytes] = {}


def _constraints_message(constraints: Mapping[str, Any]) -> pb.Constraints:
    message = pb.Constraints()
    _fill(message, constraints)
    message.empty_collections.extend(_empty_collections(constraints))
    return message


def _constraints_bytes(constraints: Mapping[str, Any]) -> bytes:
    """The serialized Constraints message of a constraints document, rendered once per distinct
    document (keyed by its JSON, which tells apart every value the message can hold)."""
    try:
        key = orjson.dumps(constraints)
    except TypeError:  # not a JSON document of plain dicts (a Mapping of another type): no key
        return _constraints_message(constraints).SerializeToString()
    rendered = _constraints_cache.get(key)
    if rendered is None:
        rendered = _constraints_message(constraints).SerializeToString()
        if len(_constraints_cache) >= _CONSTRAINTS_CACHE_SIZE:
            _constraints_cache.clear()
        _constraints_cache[key] = rendered
    return rendered


def decision_to_proto(decision: Decision) -> pb.Decision:
    message = pb.Decision()
    fill_decision(message, decision)
    return message


def fill_decision(message: pb.Decision, decision: Decision) -> None:
    """Set an empty Decision message (one inside a response: building a Decision and passing it
    to the response copies it) from `decision`."""
    message.outcome = decision.outcome.value  # type: ignore[assignment]
    for reasons, field in ((decision.reasons, message.reasons), (decision.warnings, message.warnings)):
        for r in reasons:
            field.add(code=r.code, message=r.message, policy=r.policy)
    message.bundle_revision = decision.bundle_revision
    message.decision_id = decision.decision_id
    message.tenant = decision.tenant
    message.kind = decision.kind
    message.constraints.SetInParent()  # present even when empty, as the decision document has it
    message.constraints.MergeFromString(_constraints_bytes(decision.constraints))
    for obligation in decision.obligations:
        _fill(message.obligations.add(), obligation)
    # Timestamp.FromDatetime goes through a time tuple and calendar.timegm: the same seconds by
    # date arithmetic (a naive time is UTC to both).
    at = decision.decided_at
    since = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - _EPOCH
    message.decided_at.seconds = since.days * 86_400 + since.seconds
    message.decided_at.nanos = since.microseconds * 1000
    message.evaluation_time.FromMicroseconds(round(decision.evaluation_ms * 1000))


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
            held = payload.pop("held", [])
            workload = target.workload if kind == "place_workload" else target
            if "node_affinity" in payload:
                payload["node_affinity"] = [{"requirements": t} for t in payload["node_affinity"]]
            json_format.ParseDict(payload, workload)
            if kind == "place_workload":
                for node in nodes:
                    json_format.ParseDict(node, target.nodes.add())
                for entry in held:
                    json_format.ParseDict(
                        {"resources": entry["resources"], "on": [{"labels": on} for on in entry["on"]]},
                        target.held.add(),
                    )
        else:
            json_format.ParseDict(payload, target)
    except json_format.ParseError as exc:
        raise InvalidIntent(kind, shorten(str(exc), 300)) from exc
    return message
