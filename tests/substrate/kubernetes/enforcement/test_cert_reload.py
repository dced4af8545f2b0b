"""Serving-certificate rotation without a restart: the webhook and the extender over real TLS, with
the certificate files in a directory laid out and updated the way the kubelet updates a Secret
volume (a `..data` symlink swapped to a new timestamped directory)."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pdp.net.servingcert import CertificateError, ServingCertificate
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from tests.conftest import self_signed
from tests.substrate.kubernetes.enforcement.conftest import body, pod, review

POLL = 0.05
Pair = tuple[bytes, bytes]


class SecretVolume:
    """`tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`, as the kubelet's atomic writer
    leaves it: a new version is a new directory and one rename of the `..data` symlink."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.versions = 0

    @property
    def cert(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls.key"

    def publish(self, pair: Pair) -> None:
        self.versions += 1
        version = self.root / f"..2026_11_28_18_00_00.{self.versions:09d}"
        version.mkdir()
        (version / "tls.crt").write_bytes(pair[0])
        (version / "tls.key").write_bytes(pair[1])
        data = self.root / "..data"
        previous = os.readlink(data) if data.is_symlink() else None
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, data)  # rename(2) over the old link: a reader sees one version or the other
        for name in ("tls.crt", "tls.key"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")
        if previous is not None:
            shutil.rmtree(self.root / previous)

    def withdraw(self) -> None:
        """The Secret's content gone (the links dangle)."""
        data = self.root / "..data"
        target = os.readlink(data)
        data.unlink()
        shutil.rmtree(self.root / target)


def new_pair(directory: Path) -> Pair:
    directory.mkdir()
    cert, key = self_signed(directory)
    return cert.read_bytes(), key.read_bytes()


def fingerprint(cert_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()


def trusting(pair: Pair) -> ssl.SSLContext:
    """A client that verifies the server against one certificate, as the API server does with the
    webhook's caBundle. (One at a time: the test certificates share a subject name, and OpenSSL
    would pick one of them to check the other's signature.)"""
    return ssl.create_default_context(cadata=pair[0].decode())


def _observer() -> ssl.SSLContext:
    # Takes any certificate: the tests identify it by fingerprint, which is stricter than trust.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def peer(sock: socket.socket | None) -> str:
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def served(port: int, *, may_be_cut: bool = False) -> str:
    """The fingerprint of the certificate a new connection gets. `may_be_cut`: polling while the
    Granian front switches pairs, a handshake cut by its switch to a new worker (a documented limit
    of that front, docs/enforcement.md) reads "cut" instead of failing."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            _observer().wrap_socket(raw) as tls,
        ):
            return peer(tls)
    except (ssl.SSLEOFError, ConnectionResetError):
        if not may_be_cut:
            raise
        return "cut"


def rotating(webhook: WebhookServer) -> bool:
    return webhook.front == "granian"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(POLL / 2)


@pytest.fixture()
def pairs(tmp_path: Path) -> dict[str, Pair]:
    return {name: new_pair(tmp_path / name) for name in "ABCD"}


@pytest.fixture()
def volume(tmp_path: Path, pairs: dict[str, Pair]) -> SecretVolume:
    vol = SecretVolume(tmp_path / "tls")
    vol.publish(pairs["A"])
    return vol


@pytest.fixture(params=["granian", "uvicorn"])
def webhook(
    point: DecisionPoint, volume: SecretVolume, request: pytest.FixtureRequest
) -> Iterator[WebhookServer]:
    with WebhookServer(
        AdmissionWebhook(point),
        cert_file=volume.cert,
        key_file=volume.key,
        cert_poll_interval=POLL,
        front=request.param,
    ) as running:
        yield running


def test_a_rotated_secret_serves_new_connections_and_open_ones_finish(
    webhook: WebhookServer, volume: SecretVolume, pairs: dict[str, Pair], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pdp.net.servingcert")
    a, b = fingerprint(pairs["A"][0]), fingerprint(pairs["B"][0])
    assert served(webhook.port) == a
    context = trusting(pairs["A"])

    # A keep-alive connection, idle between requests, and one with a request half sent.
    idle = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=context, timeout=10)
    idle.request("GET", "/healthz")
    assert idle.getresponse().read() == b'{"status":"ok"}'
    idle_sock = idle.sock
    raw = body(review(pod(limits={"nvidia.com/gpu": "1"}), "acme-prod", uid="uid-in-flight"))
    pending = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=context, timeout=10)
    pending.putrequest("POST", "/validate?timeout=10s")
    pending.putheader("Content-Type", "application/json")
    pending.putheader("Content-Length", str(len(raw)))
    pending.endheaders()
    pending.send(raw[: len(raw) // 2])

    volume.publish(pairs["B"])
    wait_for(lambda: served(webhook.port, may_be_cut=rotating(webhook)) == b, timeout=40 * POLL)

    pending.send(raw[len(raw) // 2 :])
    response = pending.getresponse()
    doc = json.loads(response.read())
    assert response.status == 200 and doc["response"]["uid"] == "uid-in-flight"
    if webhook.front == "uvicorn":
        assert peer(pending.sock) == a
        idle.request("GET", "/healthz")
        assert idle.getresponse().status == 200
        assert idle.sock is idle_sock and peer(idle.sock) == a  # the same connection, not a reconnect
    else:
        # Granian's old worker answers what it was sent, then closes its connections: the
        # client's next call opens a new one, on the new pair.
        assert response.getheader("connection") == "close" or pending.sock is None

    fresh = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=trusting(pairs["B"]), timeout=10)
    fresh.request("GET", "/healthz")
    assert fresh.getresponse().status == 200 and peer(fresh.sock) == b

    assert webhook.certificate is not None
    status = webhook.certificate.status()
    assert (status.current.fingerprint, status.reloads, status.failures, status.last_error) == (b, 1, 0, None)
    serial_a, serial_b = (x509.load_pem_x509_certificate(pairs[n][0]).serial_number for n in "AB")
    assert f"serial {serial_b:x}" in status.current.describe()
    assert [r.getMessage() for r in caplog.records if "reloaded" in r.getMessage()] == [
        f"serving certificate reloaded from {volume.cert}: {status.current.describe()} "
        f"(was serial {serial_a:x}); new connections use it"
    ]
    for conn in (idle, pending, fresh):
        conn.close()


def _mismatched(p: dict[str, Pair], v: SecretVolume) -> str:
    v.publish((p["C"][0], p["D"][1]))
    return f"{v.key}: the private key does not match the certificate in {v.cert}"


def _truncated_cert(p: dict[str, Pair], v: SecretVolume) -> str:
    v.publish((p["C"][0][: len(p["C"][0]) // 2], p["C"][1]))
    return f"{v.cert}: not a readable PEM certificate chain"


def _empty_cert(p: dict[str, Pair], v: SecretVolume) -> str:
    v.publish((b"", p["C"][1]))
    return f"{v.cert}: no PEM certificate in it (0 bytes)"


def _truncated_key(p: dict[str, Pair], v: SecretVolume) -> str:
    key = p["C"][1]
    v.publish((p["C"][0], key[:40] + key[-30:]))
    return f"{v.key}: not a readable PEM private key"


def _not_a_key(p: dict[str, Pair], v: SecretVolume) -> str:
    v.publish((p["C"][0], p["C"][0]))
    return f"{v.key}: no PEM private key in it"


def _withdrawn(p: dict[str, Pair], v: SecretVolume) -> str:
    v.withdraw()
    return f"{v.cert}: cannot be read (No such file or directory)"


@pytest.mark.parametrize(
    "breakage", [_mismatched, _truncated_cert, _empty_cert, _truncated_key, _not_a_key, _withdrawn]
)
def test_a_pair_that_cannot_serve_is_refused_and_the_old_one_keeps_serving(
    webhook: WebhookServer,
    volume: SecretVolume,
    pairs: dict[str, Pair],
    caplog: pytest.LogCaptureFixture,
    breakage: Callable[[dict[str, Pair], SecretVolume], str],
) -> None:
    volume.publish(pairs["B"])
    assert webhook.certificate is not None
    wait_for(
        lambda: served(webhook.port, may_be_cut=rotating(webhook)) == fingerprint(pairs["B"][0]),
        timeout=40 * POLL,
    )

    problem = breakage(pairs, volume)
    certificate = webhook.certificate
    wait_for(lambda: certificate.status().failures == 1, timeout=40 * POLL)
    time.sleep(5 * POLL)  # more polls of the same files: the error is said once, not every poll
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"serving certificate not reloaded: {problem}"), errors
    assert "still serving serial" in errors[0]
    status = certificate.status()
    assert status.last_error is not None and status.last_error.startswith(problem)
    assert status.current.fingerprint == fingerprint(pairs["B"][0]) and status.reloads == 1
    assert served(webhook.port) == fingerprint(pairs["B"][0])
    client = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=trusting(pairs["B"]), timeout=10)
    client.request("POST", "/validate?timeout=10s", body(review(pod(), "acme-prod")))
    assert json.loads(client.getresponse().read())["response"]["allowed"] is True
    client.close()

    # Once the writer finishes, the whole pair is taken.
    volume.publish(pairs["C"])
    wait_for(
        lambda: served(webhook.port, may_be_cut=rotating(webhook)) == fingerprint(pairs["C"][0]),
        timeout=40 * POLL,
    )
    assert certificate.status().last_error is None and certificate.status().reloads == 2


def test_the_extender_over_tls_reloads_too(
    point: DecisionPoint, volume: SecretVolume, pairs: dict[str, Pair]
) -> None:
    with ExtenderServer(
        SchedulerExtender(point), cert_file=volume.cert, key_file=volume.key, cert_poll_interval=POLL
    ) as server:
        assert server.url.startswith("https://")
        assert served(server.port) == fingerprint(pairs["A"][0])
        volume.publish(pairs["B"])
        wait_for(lambda: served(server.port) == fingerprint(pairs["B"][0]), timeout=40 * POLL)
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=trusting(pairs["B"]), timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200 and peer(conn.sock) == fingerprint(pairs["B"][0])
        conn.close()
    assert ExtenderServer(SchedulerExtender(point)).certificate is None


def test_content_is_compared_not_the_mtime(tmp_path: Path, pairs: dict[str, Pair]) -> None:
    """A rewrite in place that keeps the mtime (same second on a coarse filesystem, or a copy with
    preserved times) is still a new certificate."""
    cert, key = tmp_path / "plain.crt", tmp_path / "plain.key"
    cert.write_bytes(pairs["A"][0])
    key.write_bytes(pairs["A"][1])
    watched = ServingCertificate(cert, key, poll_interval=POLL)
    assert watched.check() is False  # nothing changed
    times = [(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns) for f in (cert, key)]
    cert.write_bytes(pairs["B"][0])
    key.write_bytes(pairs["B"][1])
    for f, ns in zip((cert, key), times, strict=True):
        os.utime(f, ns=ns)
    assert watched.check() is True
    assert watched.status().current.fingerprint == fingerprint(pairs["B"][0])
    assert watched.check() is False


def test_a_pair_that_cannot_serve_stops_the_server_from_starting(
    point: DecisionPoint, tmp_path: Path, pairs: dict[str, Pair]
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pairs["A"][0])
    key.write_bytes(pairs["B"][1])
    with pytest.raises(CertificateError, match=re.escape(f"{key}: the private key does not match")):
        WebhookServer(AdmissionWebhook(point), cert_file=cert, key_file=key)
    with pytest.raises(CertificateError, match=re.escape(f"{tmp_path / 'missing.crt'}: cannot be read")):
        ExtenderServer(SchedulerExtender(point), cert_file=tmp_path / "missing.crt", key_file=key)
