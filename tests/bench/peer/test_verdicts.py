"""The fair peer run refuses to measure a server that answers an error, or a verdict the other
servers do not give: the broken peer of earlier runs (every review `allowed: false`, code 500)
is caught here, before any timing."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.peer.alpn import negotiated
from bench.peer.verdicts import VerdictError, agree, verdict
from pdp.net.certs import issue_server_cert, make_ca

Answer = Callable[[bytes], tuple[int, bytes]]


def _review(allowed: bool, code: int | None = None, message: str = "") -> bytes:
    response: dict[str, object] = {"uid": "bench", "allowed": allowed}
    if code is not None:
        response["status"] = {"code": code, "message": message}
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    ).encode()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """An HTTPS server on loopback answering each POST with `answer(body)`, offering `alpn`; its
    URL."""
    tls = issue_server_cert(make_ca(tmp_path / "ca"), tmp_path / "serving", ["127.0.0.1"])
    started: list[ThreadingHTTPServer] = []

    def start(answer: Answer, alpn: tuple[str, ...] = ()) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status, body = answer(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"https://127.0.0.1:{server.server_address[1]}/validate?timeout=10s"

    yield start
    for server in started:
        server.shutdown()


def by_body(answer: Callable[[bytes], bytes]) -> Answer:
    return lambda body: (200, answer(body))


def honest(body: bytes) -> bytes:
    return _review(True) if b"allowed" in body else _review(False, 403, "RESIDENCY_VIOLATION")


BODIES = {"allowed": b'{"pod": "allowed"}', "denied": b'{"pod": "denied"}'}
EXPECTED = {"allowed": True, "denied": False}


def test_servers_that_agree_are_measured(serve: Callable[..., str]) -> None:
    urls = {"gatekeeper": serve(by_body(honest)), "wasm": serve(by_body(honest))}
    said = agree(urls, BODIES, EXPECTED)
    assert said["denied"]["gatekeeper"].code == 403 and said["allowed"]["wasm"].allowed


def test_an_error_answered_as_a_denial_stops_the_run(serve: Callable[..., str]) -> None:
    """Gatekeeper without the tenant's namespace: `allowed: false`, code 500, for every review."""
    broken = serve(by_body(lambda body: _review(False, 500, 'namespaces "acme-prod" not found')))
    urls = {"gatekeeper": broken, "wasm": serve(by_body(honest))}
    with pytest.raises(VerdictError, match=r"code 500.*acme-prod"):
        agree(urls, {"denied": BODIES["denied"]}, EXPECTED)


def test_a_verdict_the_others_do_not_give_stops_the_run_naming_server_and_body(
    serve: Callable[..., str],
) -> None:
    urls = {"gatekeeper": serve(by_body(honest)), "wasm": serve(by_body(lambda body: _review(True)))}
    with pytest.raises(VerdictError, match=r"'denied' should be denied: wasm: allowed=True"):
        agree(urls, BODIES, EXPECTED)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (lambda body: (503, b'{"message": "overloaded"}'), "HTTP 503"),
        (lambda body: (200, b"<html>not a review</html>"), "not an AdmissionReview answer"),
    ],
)
def test_an_answer_that_is_not_a_review_is_an_error(
    serve: Callable[..., str], answer: Answer, problem: str
) -> None:
    with pytest.raises(VerdictError, match=problem):
        verdict(serve(answer), BODIES["allowed"])


def test_the_protocol_a_server_chooses_is_read_from_alpn(serve: Callable[..., str]) -> None:
    """http.server offers no ALPN protocol: a row "over HTTP/2" against it is an HTTP/1.1 row."""
    assert negotiated(serve(by_body(honest))) == "http/1.1"


def test_a_server_offering_http2_is_read_as_h2(serve: Callable[..., str]) -> None:
    assert negotiated(serve(by_body(honest), alpn=("h2", "http/1.1"))) == "h2"
    assert negotiated(serve(by_body(honest), alpn=("h2", "http/1.1")), ("http/1.1",)) == "http/1.1"
