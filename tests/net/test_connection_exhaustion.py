"""Every decision front keeps answering while 1,000 connections that send nothing, or half a
request, are held against it (issue 28, hole 1): the HTTP decision API, the admission webhook, the
scheduler extender and gRPC Decide.

Before the connection budget, ~256 such connections turned every `/v1/decide` into a 503 (uvicorn's
`limit_concurrency`) and 128 made the webhook and the extender reset every new connection at
accept, each for as long as they were held. Each answer here comes on a new connection, the case
an attacker's held connections starve: the Slurm hook and the API server open new ones.

The webhook as shipped (Granian, a client CA) is held against beyond its 1,024-connection cap by
strangers: silent, half a ClientHello, a handshake without a client certificate or with one of
another CA. A holder of the client CA's certificate can still hold its slots (docs/enforcement.md).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import ssl
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pdp.api.client import PdpClient
from pdp.api.http_server import HttpDecisionServer
from pdp.api.server import PdpServer
from pdp.embedded import EmbeddedPDP
from pdp.net.serving.gate import GatedServer
from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from tests.conftest import load_intent, self_signed
from tests.substrate.kubernetes.enforcement.conftest import body, pod, review

HELD = 1000
ASKED = 20
GRANIAN_CAP = 1024
"""The Granian front's default `max_connections`: the shipped webhook's (chart, deploy/)."""
PROMPT = 2.0
"""Seconds an answer may take while the connections are held: a decision takes milliseconds, so
this is the loaded 2-core machine's margin; without the budget the answer is a 503 or a reset."""
BURST = 5.0
"""Seconds the first answer may take: its connection queues behind the server taking in (and
evicting) the 1,000 just opened, 30 ms to 1.2 s measured."""

_INTENT = json.dumps(load_intent("01-acme-eu-deploy-eu.json")).encode()
_REQUEST_HEAD = b"POST /v1/decide HTTP/1.1\r\nHost: pdp\r\nContent-Type: application/json\r\n"

HTTP_PAYLOADS = {
    "silent": b"",
    "half-request-line": b"POST /v1/dec",
    "half-headers": _REQUEST_HEAD,
    "body-never-completed": _REQUEST_HEAD + b'Content-Length: 4096\r\n\r\n{"kind": ',
}
TLS_PAYLOADS = {
    "silent": b"",
    # A TLS record header announcing a 512-byte ClientHello, then nothing.
    "half-client-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}
GRPC_PAYLOADS = {
    "silent": b"",
    # HTTP/2's client preface and an empty SETTINGS frame: a connection that never opens a stream.
    "http2-no-request": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
}


@pytest.fixture(scope="module", autouse=True)
def descriptors() -> None:
    """Room for the held connections and the server's side of them, in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * max(HELD, GRANIAN_CAP + 76)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} descriptors this needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@contextlib.contextmanager
def held(port: int, payload: bytes) -> Iterator[list[socket.socket]]:
    """HELD connections to `port`, each having sent `payload` and nothing more, open until the end
    of the block (on this side: the server may close its side)."""
    with _held(port, payload, HELD) as sockets:
        yield sockets


@contextlib.contextmanager
def _held(port: int, payload: bytes, count: int) -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            except ConnectionResetError:
                continue  # refused at accept: what the answers below will meet too
            sockets.append(sock)
            if payload:
                with contextlib.suppress(OSError):  # the server may already have closed it
                    sock.sendall(payload)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def timed_answers(ask: Callable[[], int]) -> list[tuple[int, float]]:
    """ASKED answers of `ask` (a status, 0 when the connection failed), each with its seconds."""
    answers = []
    for _ in range(ASKED):
        started = time.monotonic()
        try:
            status = ask()
        except (OSError, http.client.HTTPException, grpc.RpcError):
            status = 0
        answers.append((status, time.monotonic() - started))
    return answers


def assert_prompt(
    answers: list[tuple[int, float]], front: str, ok: int = 200, held_count: int = HELD
) -> None:
    seconds = [elapsed for _, elapsed in answers]
    print(
        f"\n{front}: {len(answers)} answers while {held_count} connections were held: "
        f"median {statistics.median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms"
    )
    assert [status for status, _ in answers] == [ok] * len(answers), answers
    print("  ms each: " + " ".join(f"{x * 1000:.0f}" for x in seconds))
    assert seconds[0] < BURST and max(seconds[1:]) < PROMPT, answers


def post(port: int, path: str, raw: bytes, context: ssl.SSLContext | None = None) -> int:
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request("POST", path, raw, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def within_cap(gate: GatedServer) -> None:
    """The server's side: the held connections beyond the cap were closed, not kept."""
    assert gate.open <= gate.cap, (gate.open, gate.cap)


@pytest.fixture(scope="module")
def decision_api(stack: EmbeddedPDP) -> Iterator[HttpDecisionServer]:
    with HttpDecisionServer(stack.point, engine_ready=stack.engine_ready) as server:
        yield server


@pytest.mark.parametrize("variant", sorted(HTTP_PAYLOADS))
def test_the_http_decision_api_answers_while_connections_are_held(
    decision_api: HttpDecisionServer, variant: str
) -> None:
    with held(decision_api.port, HTTP_PAYLOADS[variant]):
        answers = timed_answers(lambda: post(decision_api.port, "/v1/decide", _INTENT))
        within_cap(decision_api.gate)
    assert_prompt(answers, f"/v1/decide ({variant})")


@pytest.fixture(scope="module")
def extender(stack: EmbeddedPDP) -> Iterator[ExtenderServer]:
    with ExtenderServer(SchedulerExtender(stack.point)) as server:
        yield server


@pytest.mark.parametrize("variant", sorted(HTTP_PAYLOADS))
def test_the_extender_answers_while_connections_are_held(extender: ExtenderServer, variant: str) -> None:
    args = body({"Pod": pod(namespace="acme-eu"), "Nodes": {"items": []}})
    with held(extender.port, HTTP_PAYLOADS[variant]):
        answers = timed_answers(lambda: post(extender.port, "/filter", args))
        within_cap(extender.gate)
    assert_prompt(answers, f"extender /filter ({variant})")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def webhook(stack: EmbeddedPDP, tls: tuple[Path, Path]) -> Iterator[WebhookServer]:
    cert, key = tls
    with WebhookServer(AdmissionWebhook(stack.point), cert_file=cert, key_file=key) as server:
        yield server


@pytest.mark.parametrize("variant", sorted(TLS_PAYLOADS))
def test_the_webhook_answers_while_connections_are_held(
    webhook: WebhookServer, tls: tuple[Path, Path], variant: str
) -> None:
    context = ssl.create_default_context(cafile=str(tls[0]))
    admission = body(review(pod(namespace="acme-eu"), "acme-eu"))
    with held(webhook.port, TLS_PAYLOADS[variant]):
        answers = timed_answers(lambda: post(webhook.port, "/validate?timeout=5s", admission, context))
        within_cap(webhook.gate)
    assert_prompt(answers, f"webhook /validate ({variant})")


@contextlib.contextmanager
def handshaken(port: int, context: ssl.SSLContext, count: int) -> Iterator[int]:
    """`count` connections that each finish the client's side of a TLS handshake with `context`
    (the server may then close them) and send nothing more, open on this side until the end of
    the block; yields how many handshakes the client finished."""
    sockets: list[socket.socket] = []
    finished = 0
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sockets.append(sock)
            with contextlib.suppress(OSError):  # refused by the server: what the attack meets
                sockets[-1] = context.wrap_socket(sock, server_hostname="127.0.0.1")
                finished += 1
        yield finished
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def shipped_webhook(stack: EmbeddedPDP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The webhook as the chart ships it: Granian, a client CA that signs the API server's
    certificate alone (scripts/make-certs --client)."""
    from pdp.net.clientauth import ClientAuth
    from tests.substrate.kubernetes.enforcement.test_client_auth import Pki

    pki = Pki(tmp_path_factory.mktemp("shipped-pki"))
    with WebhookServer(
        AdmissionWebhook(stack.point),
        cert_file=pki.serving.cert,
        key_file=pki.serving.key,
        client_auth=ClientAuth(pki.ca.cert),
        front="granian",
    ) as server:
        yield server, pki


@pytest.mark.parametrize("attack", ["silent", "half-client-hello", "no-certificate", "another-ca"])
def test_the_shipped_webhook_answers_its_api_server_while_strangers_hold_more_than_its_cap(
    shipped_webhook: Any, attack: str
) -> None:
    """Beyond the Granian front's connection cap, strangers' connections (no client certificate,
    or one of another CA) never take a slot from the API server's."""
    server, pki = shipped_webhook
    apiserver = ssl.create_default_context(cafile=str(pki.server_ca))
    apiserver.load_cert_chain(pki.apiserver.cert, pki.apiserver.key)
    stranger = ssl.create_default_context(cafile=str(pki.server_ca))
    if attack == "another-ca":
        stranger.load_cert_chain(pki.stranger.cert, pki.stranger.key)
    admission = body(review(pod(namespace="acme-eu"), "acme-eu"))
    count = GRANIAN_CAP + 76
    with contextlib.ExitStack() as held_open:
        if attack in TLS_PAYLOADS:
            held_open.enter_context(_held(server.port, TLS_PAYLOADS[attack], count))
        else:
            held_open.enter_context(handshaken(server.port, stranger, count))
        answers = timed_answers(lambda: post(server.port, "/validate?timeout=5s", admission, apiserver))
    assert_prompt(answers, f"shipped webhook /validate ({attack})", held_count=count)


@pytest.fixture(scope="module")
def grpc_server(stack: EmbeddedPDP) -> Iterator[PdpServer]:
    running = PdpServer(stack.point, listen="127.0.0.1:0", engine_ready=stack.engine_ready).start()
    yield running
    running.stop()


@pytest.mark.parametrize("variant", sorted(GRPC_PAYLOADS))
def test_grpc_decide_answers_while_connections_are_held(grpc_server: PdpServer, variant: str) -> None:
    intent = load_intent("01-acme-eu-deploy-eu.json")

    def decide() -> int:
        # A new channel each time: a new connection, which the held ones must not starve.
        with PdpClient(grpc_server.address, timeout=PROMPT * 2) as client:
            return 200 if client.decide(intent)["outcome"] == "ALLOW" else 500

    with held(grpc_server.port, GRPC_PAYLOADS[variant]):
        answers = timed_answers(decide)
    assert_prompt(answers, f"gRPC Decide ({variant})")


@pytest.mark.parametrize("variant", sorted(GRPC_PAYLOADS))
def test_grpc_closes_connections_that_never_ask(stack: EmbeddedPDP, variant: str) -> None:
    # Silent: the handshake deadline (gRPC's own default keeps it 120 s). HTTP/2 opened and no
    # stream: the idle deadline (gRPC's own default keeps it forever).
    server = PdpServer(
        stack.point, listen="127.0.0.1:0", handshake_timeout=0.5, max_connection_idle=1
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(GRPC_PAYLOADS[variant] or b"")
            started = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(4096):  # the server's SETTINGS, then its close
                    pass
            assert time.monotonic() - started < 5
    finally:
        server.stop()
