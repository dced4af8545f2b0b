"""AdmissionReview (admission.k8s.io/v1) parsing and rendering (pure).

A decision becomes an admission response here: the reasons in the message a `kubectl apply` user
reads, the decision id and bundle revision in the API server's audit log, and the failure mode
deciding what an engine failure means for the object.

Failure modes (what an engine failure, `Decision.engine_failed`, does):

- `closed` (default): the object is denied; nothing is admitted that policy did not allow.
- `open-non-gpu`: objects that ask for no GPUs are admitted with a warning (they only crossed a
  platform label, taint or priority class); objects that ask for GPUs are still denied. There is
  deliberately no mode that lets GPU objects through on an engine failure: that would sell
  capacity the policies never approved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pdp.decision import Decision, Outcome
from pdp.substrate.kubernetes.enforcement.claims import claim_workload, is_claim
from pdp.substrate.kubernetes.enforcement.workloads import (
    InvalidObject,
    UnsupportedObject,
    asks_for_gpus,
    workload_from_object,
)

API_VERSION = "admission.k8s.io/v1"
FAILURE_MODES = ("closed", "open-non-gpu")
# Operations that place nothing: a deletion frees capacity, CONNECT (exec, attach, port-forward)
# reaches a pod already placed. Every other operation but CREATE and UPDATE is refused.
NOTHING_TO_PLACE = frozenset({"DELETE", "CONNECT"})
OPERATIONS = frozenset({"CREATE", "UPDATE", *NOTHING_TO_PLACE})
MAX_WARNING = 120  # the API server's advice for warning length; longer ones may be cut or dropped
DENIED = 403
BAD_OBJECT = 400


class BadReview(ValueError):
    """The body is not an AdmissionReview the webhook can answer; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    kind: str
    namespace: str
    name: str
    operation: str
    object: Mapping[str, Any] | None
    dry_run: bool = False
    username: str = ""
    sub_resource: str = ""

    @property
    def subject(self) -> str:
        """How messages name the object: `Pod acme-prod/llama-0`."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind or 'object'} {where}"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_review(body: bytes) -> AdmissionRequest:
    try:
        doc = orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadReview(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadReview(400, "the body is not a JSON object")
    if doc.get("apiVersion") != API_VERSION:
        raise BadReview(400, f"apiVersion is {doc.get('apiVersion')!r}, expected {API_VERSION!r}")
    if doc.get("kind") != "AdmissionReview":
        raise BadReview(400, f"kind is {doc.get('kind')!r}, expected 'AdmissionReview'")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise BadReview(400, "request is missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview(400, "request.uid is missing")
    operation = _str(request.get("operation"))
    obj = request.get("object")
    if operation in ("CREATE", "UPDATE") and not isinstance(obj, dict):
        raise BadReview(400, f"request.object is missing for {operation}")
    if not isinstance(obj, dict):
        obj = None
    gvk = request.get("kind")
    kind = _str(obj.get("kind")) if obj else ""
    kind = kind or (_str(gvk.get("kind")) if isinstance(gvk, dict) else "")
    metadata = obj.get("metadata") if obj else None
    metadata = metadata if isinstance(metadata, dict) else {}
    namespace = _str(request.get("namespace")) or _str(metadata.get("namespace"))
    name = _str(request.get("name")) or _str(metadata.get("name")) or _str(metadata.get("generateName"))
    user = request.get("userInfo")
    return AdmissionRequest(
        uid=uid,
        kind=kind,
        namespace=namespace,
        name=name or "(unnamed)",
        operation=operation,
        object=obj,
        dry_run=request.get("dryRun") is True,
        username=_str(user.get("username")) if isinstance(user, dict) else "",
        sub_resource=_str(request.get("subResource")),
    )


def _cut(text: str, limit: int = MAX_WARNING) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def review_response(
    uid: str,
    *,
    allowed: bool,
    code: int | None = None,
    message: str | None = None,
    warnings: Sequence[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code or DENIED, "message": message or "denied by gpupaas"}
    elif message:
        response["status"] = {"code": code or 200, "message": message}
    if warnings:
        response["warnings"] = [_cut(w) for w in warnings]
    if audit_annotations:
        response["auditAnnotations"] = dict(audit_annotations)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _reasons(decision: Decision) -> str:
    # A pod with a fixed spec.nodeName is judged against that node; say why the node is refused.
    refused = [
        f"[{r['code']}] {r['message']}"
        for rejection in decision.constraints.get("rejected_nodes") or ()
        for r in rejection.get("reasons", ())
    ]
    return decision.explanation(*refused)


def audit_annotations(decision: Decision) -> dict[str, str]:
    return {
        "decision-id": decision.decision_id,
        "bundle-revision": decision.bundle_revision,
        "outcome": decision.outcome.value,
    }


def _object_asks_for_gpus(request: AdmissionRequest) -> bool:
    if request.object is None:
        return False
    try:
        if is_claim(request.object):
            return asks_for_gpus(claim_workload(request.object, request.namespace))
        return asks_for_gpus(workload_from_object(request.object, request.namespace))
    except (InvalidObject, UnsupportedObject):
        return True  # unknown means GPU: the closed side


def response_for_decision(
    request: AdmissionRequest,
    decision: Decision,
    *,
    failure_mode: str = "closed",
    gpus: bool | None = None,
) -> dict[str, Any]:
    """The admission response for a decision on `request`'s object. `gpus`: whether the object
    asks for GPUs (computed from the object when not given); only matters on engine failure."""
    annotations = audit_annotations(decision)
    warnings = [w.message for w in decision.warnings]
    if decision.outcome is Outcome.ALLOW:
        return review_response(request.uid, allowed=True, warnings=warnings, audit_annotations=annotations)
    if decision.engine_failed:
        asks = _object_asks_for_gpus(request) if gpus is None else gpus
        if failure_mode == "open-non-gpu" and not asks:
            warning = f"gpupaas could not decide, admitted without policy (fail-open): {_reasons(decision)}"
            return review_response(
                request.uid, allowed=True, warnings=[warning, *warnings], audit_annotations=annotations
            )
        message = (
            f"gpupaas could not decide {request.subject}, failing closed: {_reasons(decision)} "
            f"{decision.provenance()}"
        )
    elif decision.outcome is Outcome.NEEDS_APPROVAL:
        message = (
            f"gpupaas: {request.subject} needs approval, which admission cannot wait for; "
            f"get it approved, then apply again: {_reasons(decision)} {decision.provenance()}"
        )
    else:
        message = f"gpupaas denied {request.subject}: {_reasons(decision)} {decision.provenance()}"
    return review_response(
        request.uid, allowed=False, message=message, warnings=warnings, audit_annotations=annotations
    )


def unclassified_response(request: AdmissionRequest) -> dict[str, Any]:
    """A reasoned denial (400) for a request the webhook cannot classify: an operation missing or
    unknown, or no object to judge. Allowing it would admit what policy never saw."""
    if request.operation not in OPERATIONS:
        shown = repr(request.operation) if request.operation else "missing"
        problem = f"request.operation is {shown}, not one of {', '.join(sorted(OPERATIONS))}"
    else:
        problem = f"request.object is missing for {request.operation}"
    return review_response(
        request.uid,
        allowed=False,
        code=BAD_OBJECT,
        message=f"gpupaas cannot classify {request.subject}, so it is not admitted: {problem}",
        audit_annotations={"outcome": "UNCLASSIFIED"},
    )


def invalid_object_response(request: AdmissionRequest, error: Exception) -> dict[str, Any]:
    """A reasoned denial (400) for an object the PDP cannot turn into a well-formed intent."""
    return review_response(
        request.uid,
        allowed=False,
        code=BAD_OBJECT,
        message=f"gpupaas cannot evaluate {request.subject}: {error}",
        audit_annotations={"outcome": "INVALID"},
    )
