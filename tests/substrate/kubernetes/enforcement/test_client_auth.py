"""Client-certificate authentication of the webhook and the extender (issue 28, hole 2): with a
client CA only a client presenting a certificate it signed, naming an allowed client, is answered;
no certificate, another CA's, or the right CA's for another name is refused before a request is
read. The client CA rotates without a restart, like the serving pair. The decision log records
who called as the certificate names it (`principal`), nothing without client authentication."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.net.certs import CertPair, issue_client_cert, issue_server_cert, make_ca
from pdp.net.clientauth import ClientAuth
from pdp.net.jsonhttp import HttpService
from pdp.point import DecisionPoint
from pdp.records.log import DecisionLog, Integrity
from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender
from pdp.substrate.kubernetes.enforcement.webhook import WEBHOOK_FRONTS, AdmissionWebhook, WebhookServer
from tests.substrate.kubernetes.enforcement.conftest import body, labels, node, pod, review

POLL = 0.05


class NeverAsked:
    """The engine: the requests here need no decision (a pod without GPUs, an empty node list)."""

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        raise AssertionError("no decision was needed")


class Pki:
    def __init__(self, root: Path) -> None:
        self.ca = make_ca(root / "client-ca", "kube-client-ca")
        self.other_ca = make_ca(root / "other-ca", "kube-client-ca")  # the same name, another key
        server_ca = make_ca(root / "server-ca", "serving-ca")
        self.server_ca = server_ca.cert
        self.serving = issue_server_cert(server_ca, root / "serving", ["127.0.0.1"])
        self.apiserver = issue_client_cert(self.ca, root / "apiserver", "kube-apiserver")
        self.scheduler = issue_client_cert(self.ca, root / "scheduler", "kube-scheduler")
        self.stranger = issue_client_cert(self.other_ca, root / "stranger", "kube-apiserver")
        # A serving certificate of the client CA is no client certificate (serverAuth only).
        self.ca_serving = issue_server_cert(self.ca, root / "ca-serving", ["kube-apiserver"])


@pytest.fixture()
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def call(server: HttpService, pki: Pki, client: CertPair | None, path: str, payload: bytes) -> int:
    """POST `payload` as `client` (None: no certificate); the status, or raises the refusal."""
    context = ssl.create_default_context(cafile=pki.server_ca)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=5)
    try:
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def refused(server: HttpService, pki: Pki, client: CertPair | None, path: str, payload: bytes) -> bool:
    # Under TLS 1.3 the client's side of the handshake is done before the server has checked its
    # certificate, so the refusal (an alert, or the connection closed) shows on the first read.
    try:
        call(server, pki, client, path, payload)
    except (ssl.SSLError, OSError, http.client.HTTPException):
        return True
    return False


ADMIT = body(review(pod(), "globex-ml"))
FILTER = json.dumps({"pod": pod(), "nodenames": []}).encode()


@pytest.fixture()
def webhook(pki: Pki) -> Iterator[WebhookServer]:
    auth = ClientAuth(pki.ca.cert, frozenset({"kube-apiserver"}))
    with WebhookServer(
        AdmissionWebhook(DecisionPoint(NeverAsked())),
        cert_file=pki.serving.cert,
        key_file=pki.serving.key,
        client_auth=auth,
        cert_poll_interval=POLL,
    ) as server:
        yield server


@pytest.fixture()
def extender(pki: Pki) -> Iterator[ExtenderServer]:
    auth = ClientAuth(pki.ca.cert, frozenset({"kube-scheduler"}))
    with ExtenderServer(
        SchedulerExtender(DecisionPoint(NeverAsked())),
        cert_file=pki.serving.cert,
        key_file=pki.serving.key,
        client_auth=auth,
    ) as server:
        yield server


def test_the_webhook_answers_only_the_api_servers_certificate(webhook: WebhookServer, pki: Pki) -> None:
    assert call(webhook, pki, pki.apiserver, "/validate", ADMIT) == 200
    assert refused(webhook, pki, None, "/validate", ADMIT)
    assert refused(webhook, pki, pki.stranger, "/validate", ADMIT)  # another CA, the right name
    assert refused(webhook, pki, pki.scheduler, "/validate", ADMIT)  # the right CA, another name
    assert refused(webhook, pki, pki.ca_serving, "/validate", ADMIT)  # a serving certificate
    # Refusals neither hold a place in the connection budget nor stop the right client.
    assert webhook.gate.open <= 1
    assert call(webhook, pki, pki.apiserver, "/validate", ADMIT) == 200


def test_the_extender_answers_only_the_schedulers_certificate(extender: ExtenderServer, pki: Pki) -> None:
    assert call(extender, pki, pki.scheduler, "/filter", FILTER) == 200
    assert refused(extender, pki, None, "/filter", FILTER)
    assert refused(extender, pki, pki.stranger, "/filter", FILTER)
    assert refused(extender, pki, pki.apiserver, "/filter", FILTER)
    assert call(extender, pki, pki.scheduler, "/prioritize", FILTER) == 200


def test_without_names_any_client_certificate_of_the_ca_is_answered(pki: Pki) -> None:
    with WebhookServer(
        AdmissionWebhook(DecisionPoint(NeverAsked())),
        cert_file=pki.serving.cert,
        key_file=pki.serving.key,
        client_auth=ClientAuth(pki.ca.cert),
    ) as server:
        assert call(server, pki, pki.scheduler, "/validate", ADMIT) == 200
        assert refused(server, pki, pki.stranger, "/validate", ADMIT)
        assert refused(server, pki, None, "/validate", ADMIT)


@pytest.mark.parametrize("front", WEBHOOK_FRONTS)
def test_a_rotated_client_ca_applies_to_new_connections(tmp_path: Path, pki: Pki, front: str) -> None:
    """On both fronts: uvicorn checks the names too; Granian cannot (the CA alone) and serves a
    new CA with a new worker."""
    ca_file = tmp_path / "client-ca.crt"
    shutil.copy(pki.ca.cert, ca_file)
    names = frozenset({"kube-apiserver"}) if front == "uvicorn" else frozenset()
    with WebhookServer(
        AdmissionWebhook(DecisionPoint(NeverAsked())),
        cert_file=pki.serving.cert,
        key_file=pki.serving.key,
        client_auth=ClientAuth(ca_file, names),
        cert_poll_interval=POLL,
        front=front,
    ) as server:
        assert call(server, pki, pki.apiserver, "/validate", ADMIT) == 200
        assert refused(server, pki, pki.stranger, "/validate", ADMIT)
        # A bundle that does not parse is refused; the loaded CA keeps verifying.
        ca_file.write_text("not a certificate")
        deadline = time.monotonic() + 5
        while (status := server.certificate.status()).failures == 0:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(POLL)
        assert status.last_error is not None and str(ca_file) in status.last_error
        assert call(server, pki, pki.apiserver, "/validate", ADMIT) == 200
        # The other CA now: its client is answered (once the new CA serves), the first CA's is not.
        shutil.copy(pki.other_ca.cert, ca_file)
        deadline = time.monotonic() + 10
        while refused(server, pki, pki.stranger, "/validate", ADMIT):
            assert time.monotonic() < deadline, "the new client CA was never served"
            time.sleep(POLL)
        assert server.certificate.status().reloads == 1  # type: ignore[union-attr]
        assert call(server, pki, pki.stranger, "/validate", ADMIT) == 200
        assert refused(server, pki, pki.apiserver, "/validate", ADMIT)


def test_client_certificates_need_the_extender_to_serve_tls(pki: Pki) -> None:
    with pytest.raises(ValueError, match="client certificates need TLS"):
        ExtenderServer(SchedulerExtender(DecisionPoint(NeverAsked())), client_auth=ClientAuth(pki.ca.cert))


GPU_POD = pod("trainer-0", namespace="globex-ml", uid="globex-1", limits={"nvidia.com/gpu": "1"})
GPU_FILTER = json.dumps(
    {"Pod": GPU_POD, "Nodes": {"items": [node("eu-shared-1", labels("eu-west-1", "eu-h100-shared"))]}}
).encode()


@pytest.fixture()
def logged(stack: EmbeddedPDP, tmp_path: Path) -> Iterator[tuple[DecisionPoint, DecisionLog]]:
    log = DecisionLog(
        tmp_path / "state" / "decisions.sqlite", Integrity(checkpoints=f"dir:{tmp_path / 'ck'}")
    )
    yield DecisionPoint(stack.engine, log, coalesce=False), log
    log.close()


def test_the_decision_log_records_the_client_certificates_name(
    logged: tuple[DecisionPoint, DecisionLog], pki: Pki
) -> None:
    point, log = logged
    apiserver = ClientAuth(pki.ca.cert, frozenset({"kube-apiserver"}))
    with WebhookServer(
        AdmissionWebhook(point), cert_file=pki.serving.cert, key_file=pki.serving.key, client_auth=apiserver
    ) as webhook:
        assert call(webhook, pki, pki.apiserver, "/validate", body(review(GPU_POD, "globex-ml"))) == 200
    # Without names: the certificate's CN all the same.
    with ExtenderServer(
        SchedulerExtender(point),
        cert_file=pki.serving.cert,
        key_file=pki.serving.key,
        client_auth=ClientAuth(pki.ca.cert),
    ) as extender:
        assert call(extender, pki, pki.scheduler, "/filter", GPU_FILTER) == 200
    # Without client authentication no one is named, as before.
    with ExtenderServer(SchedulerExtender(point)) as plain:
        conn = http.client.HTTPConnection("127.0.0.1", plain.port, timeout=10)
        conn.request("POST", "/filter", body=GPU_FILTER, headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
    assert [r.principal for r in log.query()] == [
        "substrate:kube-apiserver",
        "substrate:kube-scheduler",
        None,
    ]
