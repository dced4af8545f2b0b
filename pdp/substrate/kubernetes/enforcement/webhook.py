"""The validating admission webhook: every workload object the API server admits that asks for
GPUs or touches a platform constraint is decided by the same DecisionPoint as every other intent.

Objects that need no policy are answered at once without asking the engine, so an outage of the
policy engine never blocks the rest of the cluster (kube-system, ordinary services).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from pdp import metrics
from pdp.intents import InvalidIntent
from pdp.net.clientauth import ClientAuth
from pdp.net.durations import parse_go_duration
from pdp.net.jsonhttp import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_PENDING,
    DEFAULT_THREADS,
    HttpError,
    HttpService,
    JsonHttpServer,
    Query,
)
from pdp.net.limits import DEFAULT_LIMITS, ServingLimits
from pdp.net.servingcert import DEFAULT_POLL_INTERVAL, ServingCertificate
from pdp.point import DecideOptions, DecisionPoint
from pdp.substrate.kubernetes.enforcement.admission import (
    FAILURE_MODES,
    NOTHING_TO_PLACE,
    BadReview,
    invalid_object_response,
    parse_review,
    response_for_decision,
    review_response,
    unclassified_response,
)
from pdp.substrate.kubernetes.enforcement.claims import claim_workload, is_claim
from pdp.substrate.kubernetes.enforcement.extender import ClusterView
from pdp.substrate.kubernetes.enforcement.workloads import (
    InvalidObject,
    UnsupportedObject,
    asks_for_gpus,
    named_nodes,
    needs_policy,
    workload_from_object,
)

DEFAULT_TIMEOUT = 10.0  # the API server's default webhook timeout
MAX_TIMEOUT = 30.0  # the API server's maximum


def reply_margin(timeout: float) -> float:
    """Time kept back from the API server's timeout to send the answer back over the network."""
    return min(0.25, 0.02 + 0.1 * timeout)


class AdmissionWebhook:
    def __init__(
        self,
        point: DecisionPoint,
        *,
        failure_mode: str = "closed",
        default_timeout: float = DEFAULT_TIMEOUT,
        cluster: ClusterView | None = None,
    ) -> None:
        """`cluster`: node labels and occupancy, to judge pods that name their node themselves
        (spec.nodeName skips the scheduler, and with it the extender). Without it the policy
        judges named nodes from the fleet data in the bundle alone."""
        if failure_mode not in FAILURE_MODES:
            raise ValueError(f"failure mode {failure_mode!r} is not one of {', '.join(FAILURE_MODES)}")
        self.point = point
        self.cluster = cluster
        self.failure_mode = failure_mode
        self.default_timeout = default_timeout

    def review(
        self,
        body: bytes,
        timeout: float | None = None,
        *,
        arrived: float | None = None,
        caller: str | None = None,
    ) -> dict[str, Any]:
        """The AdmissionReview answer for `body`. Raises BadReview only when the body is not an
        AdmissionReview at all; every object gets an answer.

        `arrived`: when the request reached the server (time.monotonic()); the API server's
        timeout runs from there, so time spent queueing for a decision thread counts against it.
        `caller`: who asked as the client certificate says (the decision log's `principal`)."""
        started = time.monotonic() if arrived is None else arrived
        try:
            answer = self._review(body, timeout, started, caller)
        except BadReview:
            metrics.webhook_answered("error", started)
            raise
        allowed = answer.get("response", {}).get("allowed")
        metrics.webhook_answered("allow" if allowed else "deny", started)
        return answer

    def _review(
        self, body: bytes, timeout: float | None, started: float, caller: str | None
    ) -> dict[str, Any]:
        request = parse_review(body)
        if request.operation in NOTHING_TO_PLACE:
            return review_response(request.uid, allowed=True)
        if request.operation not in ("CREATE", "UPDATE") or request.object is None:
            # Default deny: what the webhook cannot classify is not admitted.
            return unclassified_response(request)
        obj = dict(request.object)
        obj.setdefault("kind", request.kind)
        try:
            if is_claim(obj):
                workload = claim_workload(obj, request.namespace)
            else:
                workload = workload_from_object(obj, request.namespace)
        except (InvalidObject, UnsupportedObject) as exc:
            return invalid_object_response(request, exc)
        if not needs_policy(workload):
            return review_response(request.uid, allowed=True)
        intent = self._intent(workload)
        if request.username:
            intent["actor"] = request.username[:256]
        budget = min(timeout if timeout is not None else self.default_timeout, MAX_TIMEOUT)
        deadline = started + budget - reply_margin(budget)
        options = DecideOptions(
            deadline=deadline, record=not request.dry_run, entry_point="webhook", principal=caller
        )
        try:
            decision = self.point.decide(intent, options)
        except InvalidIntent as exc:
            return invalid_object_response(request, exc)
        return response_for_decision(
            request, decision, failure_mode=self.failure_mode, gpus=asks_for_gpus(workload)
        )

    def _intent(self, workload: dict[str, Any]) -> dict[str, Any]:
        names = named_nodes(workload)
        if not names or self.cluster is None:
            return {"kind": "admit_workload", "admit_workload": workload}
        # The named nodes as the cluster has them (a node it does not know has no labels, so no
        # region and no pool), judged like the extender's candidates; the policy also judges
        # them from the fleet data.
        candidates = [
            {
                "name": node,
                "labels": self.cluster.node_labels(node) or {},
                "namespaces": self.cluster.namespaces_on(node),
            }
            for node in names
        ]
        return {"kind": "place_workload", "place_workload": {**workload, "nodes": candidates}}


@functools.lru_cache(maxsize=64)
def _seconds(text: str) -> float | None:
    """The API server writes the same `?timeout=` on every call: parsed once."""
    seconds = parse_go_duration(text)
    return seconds if seconds is not None and seconds > 0 else None


def _timeout(query: Query) -> float | None:
    values = query.get("timeout")
    return _seconds(values[0]) if values else None


WEBHOOK_FRONTS = ("uvicorn", "granian")


class WebhookServer(HttpService):
    """HTTPS only: the API server refuses plain-HTTP webhooks, and admission carries whole objects.

    The certificate and key files are checked every `cert_poll_interval` seconds and a rotated
    pair serves new connections (servingcert.py). With `client_auth` only the API server's client
    certificate is answered (its admission configuration's kubeconfig; clientauth.py). Beyond
    `max_pending` reviews in progress a request is answered 503 at once (jsonhttp/);
    `reuse_port` lets more processes serve the same port (`pdp serve --webhook-workers`).

    `front`: the HTTP server, "uvicorn" (HTTP/1.1, jsonhttp/) or "granian" (HTTP/2 and HTTP/1.1 by
    ALPN, pdp/net/granian/; it cannot check `client_auth.names` and refuses them)."""

    def __init__(
        self,
        webhook: AdmissionWebhook,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_file: Path,
        key_file: Path,
        max_body: int = DEFAULT_MAX_BODY,
        cert_poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_pending: int = DEFAULT_MAX_PENDING,
        threads: int = DEFAULT_THREADS,
        reuse_port: bool = False,
        inline: bool | None = None,
        client_auth: ClientAuth | None = None,
        limits: ServingLimits = DEFAULT_LIMITS,
        front: str = "uvicorn",
    ) -> None:
        """`inline`: decide on the event loop rather than on `threads` threads; by default when
        deciding never waits on I/O (the wasm engine, a decision log that is not durable)."""
        if front not in WEBHOOK_FRONTS:
            raise ValueError(f"front {front!r} is not one of {', '.join(WEBHOOK_FRONTS)}")
        self.webhook = webhook
        self.front = front
        server: Any = JsonHttpServer
        if front == "granian":
            from pdp.net.granian import GranianJsonServer

            server = GranianJsonServer
        self._http = server(
            {"/validate": self._validate},
            host=host,
            port=port,
            ssl_context=ServingCertificate(
                cert_file, key_file, poll_interval=cert_poll_interval, client_auth=client_auth
            ),
            max_body=max_body,
            max_pending=max_pending,
            threads=threads,
            reuse_port=reuse_port,
            name="gpupaas-webhook",
            listen_option="--webhook-listen",
            inline=not webhook.point.waits_on_io if inline is None else inline,
            **limits.server_options(),
        )

    def _validate(self, body: bytes, query: Query, arrived: float, caller: str | None) -> dict[str, Any]:
        try:
            return self.webhook.review(body, _timeout(query), arrived=arrived, caller=caller)
        except BadReview as exc:
            raise HttpError(exc.status, exc.message) from exc
