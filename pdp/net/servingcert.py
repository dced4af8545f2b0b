"""The serving certificate of the webhook and the extender, reloaded when its files change.

In Kubernetes the certificate is a Secret volume that cert-manager (or scripts/make-certs and a
`kubectl apply`) rotates. The kubelet writes every version into a fresh directory and then swaps
the `..data` symlink, so the paths the server was given never change, and neither do their own
mtimes: only what they resolve to does. The watcher therefore compares the content of both files
(SHA-256) on every poll; the files are a few kilobytes, and content also catches an in-place
rewrite that kept the mtime.

A new pair is taken only when it is whole: the certificate chain parses, the key parses, and the
key is the certificate's. Anything else (a pair caught half-written, a truncated PEM) is refused
with an error naming the file and the problem, and the pair already loaded keeps serving: a
rejected rotation must not take the webhook down, since a webhook that cannot answer refuses every
GPU pod (failurePolicy: Fail).

The server wraps each accepted connection with the context current at that moment, so a new pair
applies to new connections while connections already open finish on the one they started with.

With client authentication (clientauth.py) the client CA file is watched and loaded the same way,
as a third file of the pair: a CA bundle that does not parse is refused and the loaded one keeps
verifying clients.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from pdp.net.clientauth import ClientAuth

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 5.0
_READ_ATTEMPTS = 5
_REREAD_PAUSE = 0.05


class CertificateError(ValueError):
    """A certificate and key that cannot serve; the message names the file and the problem."""


class _Unstable(Exception):
    """The files changed while being read or loaded: a writer is at work, look again later."""


@dataclass(frozen=True)
class CertificateInfo:
    """The leaf certificate being served."""

    serial: int
    fingerprint: str  # SHA-256 of the DER encoding, hex, as `openssl x509 -fingerprint -sha256` shows
    subject: str
    not_after: dt.datetime

    def describe(self) -> str:
        return (
            f"serial {self.serial:x}, sha256 {self.fingerprint[:16]}, {self.subject}, "
            f"not after {self.not_after.isoformat()}"
        )


@dataclass(frozen=True)
class CertificateStatus:
    current: CertificateInfo
    reloads: int  # new pairs taken since start
    failures: int  # pairs refused since start
    last_error: str | None  # why the files on disk are not being served; None when they are


def _read_pair(*files: Path) -> tuple[bytes, ...]:
    """The files (certificate, key, and the client CA if any), read twice with the same result: a
    read that straddles a `..data` swap can get the old certificate with the new key, which is no
    mismatch anyone wrote."""
    problem: CertificateError | None = None
    for attempt in range(_READ_ATTEMPTS):
        if attempt:
            time.sleep(_REREAD_PAUSE)
        try:
            first = tuple(f.read_bytes() for f in files)
            second = tuple(f.read_bytes() for f in files)
        except OSError as exc:
            # A missing file can be the moment the kubelet removes the old directory; only an error
            # that outlasts the retries is reported.
            name = exc.filename or files[0]
            problem = CertificateError(f"{name}: cannot be read ({exc.strerror or exc})")
            continue
        if first == second:
            return first
        problem = None
    if problem is not None:
        raise problem
    raise _Unstable()


def _validate(cert_file: Path, key_file: Path, cert_pem: bytes, key_pem: bytes) -> CertificateInfo:
    """What OpenSSL would refuse, said per file (load_cert_chain only says "PEM lib" or "key values
    mismatch", without the path)."""
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise CertificateError(f"{cert_file}: no PEM certificate in it ({len(cert_pem)} bytes)")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"{cert_file}: not a readable PEM certificate chain ({exc})") from exc
    if b"PRIVATE KEY-----" not in key_pem:
        raise CertificateError(f"{key_file}: no PEM private key in it ({len(key_pem)} bytes)")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:
        raise CertificateError(
            f"{key_file}: the private key is encrypted, and a server has no one to ask for the password"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{key_file}: not a readable PEM private key ({exc})") from exc
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise CertificateError(
            f"{key_file}: the private key does not match the certificate in {cert_file} "
            "(a pair caught half-written, or from two different issuances)"
        )
    return CertificateInfo(
        serial=leaf.serial_number,
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
    )


def _no_password() -> bytes:
    # Without a callback OpenSSL prompts on the terminal for an encrypted key, which would hang the
    # watcher; _validate refuses encrypted keys first, this covers a key that changes in between.
    raise CertificateError("the private key asks for a password")


def _validate_client_ca(ca_file: Path, ca_pem: bytes) -> None:
    if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise CertificateError(f"{ca_file}: no PEM certificate in the client CA bundle ({len(ca_pem)} bytes)")
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise CertificateError(f"{ca_file}: not a readable PEM client CA bundle ({exc})") from exc


def _context(cert_file: Path, key_file: Path, client_ca: bytes | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file, password=_no_password)
    if client_ca is not None:
        require_client_certificate(context, client_ca)
    return context


def require_client_certificate(context: ssl.SSLContext, ca_pem: bytes) -> None:
    """The handshake fails without a client certificate that `ca_pem` signed. OpenSSL verifies a
    client for the TLS client purpose, so a serving certificate of the same CA (serverAuth only)
    is no client certificate."""
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))


def _load(
    cert_file: Path, key_file: Path, client_ca: Path | None = None
) -> tuple[ssl.SSLContext, CertificateInfo, bytes, tuple[bytes, ...]]:
    """A context for the pair (and client CA) on disk, its leaf, the digest of the content it
    was made from, and that content."""
    files = (cert_file, key_file) if client_ca is None else (cert_file, key_file, client_ca)
    pair = _read_pair(*files)
    info = _validate(cert_file, key_file, pair[0], pair[1])
    ca_pem = None
    if client_ca is not None:
        ca_pem = pair[2]
        _validate_client_ca(client_ca, ca_pem)
    failure: Exception | None = None
    try:
        context = _context(cert_file, key_file, ca_pem)
    except (ssl.SSLError, OSError, CertificateError) as exc:
        failure = exc
    # load_cert_chain opens the paths again, so it may have read a newer pair, or half of one,
    # than the one just validated: only a load between two identical reads is the validated pair.
    if _read_pair(*files) != pair:
        raise _Unstable()
    if failure is not None:
        what = f"{cert_file} with {key_file}" + (f" and {client_ca}" if client_ca else "")
        raise CertificateError(f"{what}: OpenSSL refuses them ({failure})")
    return context, info, _digest(pair), pair


def _digest(pair: tuple[bytes, ...]) -> bytes:
    h = hashlib.sha256()
    for part in pair:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


class ServingCertificate:
    """A TLS server context for a certificate and key on disk, swapped for a new one when the files
    change (`start` polls every `poll_interval` seconds; `check` polls once)."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        client_auth: ClientAuth | None = None,
    ) -> None:
        """Raises CertificateError when the pair cannot serve: a server without a certificate
        should not start at all. `client_auth`: require client certificates of its CA (whose file
        is watched with the pair) naming one of its names."""
        if poll_interval <= 0:
            raise ValueError(f"poll interval {poll_interval} is not positive")
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.client_auth = client_auth
        self.poll_interval = poll_interval
        for attempt in range(_READ_ATTEMPTS):
            try:
                self._context, self._info, self._digest, self._pem = _load(*self._files)
                break
            except _Unstable:
                time.sleep(_REREAD_PAUSE * (attempt + 1))
        else:
            raise CertificateError(f"{self.cert_file} and {self.key_file} kept changing while being read")
        self._lock = threading.Lock()
        self._refused: bytes | str | None = None  # the content (or read error) last refused, to say so once
        self._reloads = 0
        self._failures = 0
        self._last_error: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_change: Callable[[], None] | None = None
        """Called (on the watcher's thread) once a new pair serves: for a server that reads the
        pair from files rather than through `context` (pdp/net/granian/)."""
        log.info("serving certificate %s: %s", self.cert_file, self._info.describe())
        self._warn_if_expired(self._info)

    @property
    def _files(self) -> tuple[Path, Path] | tuple[Path, Path, Path]:
        if self.client_auth is None:
            return self.cert_file, self.key_file
        return self.cert_file, self.key_file, self.client_auth.ca_file

    @property
    def context(self) -> ssl.SSLContext:
        """The context for the next connection."""
        return self._context

    def pem(self) -> tuple[bytes, ...]:
        """The PEM certificate chain, key (and client CA) that serve now, validated and read in
        one piece."""
        with self._lock:
            return self._pem

    def status(self) -> CertificateStatus:
        with self._lock:
            return CertificateStatus(self._info, self._reloads, self._failures, self._last_error)

    def check(self) -> bool:
        """Look at the files once; True when a new pair now serves."""
        try:
            pair = _read_pair(*self._files)
        except _Unstable:
            return False
        except CertificateError as exc:
            self._refuse(str(exc), exc)
            return False
        digest = _digest(pair)
        if digest == self._digest:
            with self._lock:
                self._refused, self._last_error = None, None
            return False
        if digest == self._refused:
            return False
        try:
            context, info, digest, pem = _load(*self._files)
        except _Unstable:
            return False
        except CertificateError as exc:
            self._refuse(digest, exc)
            return False
        with self._lock:
            previous = self._info
            self._context, self._info, self._digest, self._pem = context, info, digest, pem
            self._refused, self._last_error = None, None
            self._reloads += 1
        log.info(
            "serving certificate reloaded from %s: %s (was serial %x); new connections use it",
            self.cert_file,
            info.describe(),
            previous.serial,
        )
        self._warn_if_expired(info)
        if self.on_change is not None:
            self.on_change()
        return True

    def _refuse(self, key: bytes | str, exc: CertificateError) -> None:
        with self._lock:
            if key == self._refused:
                return  # said already; the files have not changed since
            self._refused, self._last_error = key, str(exc)
            self._failures += 1
            serving = self._info
        log.error("serving certificate not reloaded: %s; still serving %s", exc, serving.describe())

    def _warn_if_expired(self, info: CertificateInfo) -> None:
        # Served anyway: it is what the Secret holds, and the webhook has nothing better to offer.
        if info.not_after <= dt.datetime.now(dt.UTC):
            log.warning(
                "serving certificate %s expired at %s: TLS clients will refuse it until it is rotated",
                self.cert_file,
                info.not_after.isoformat(),
            )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="gpupaas-cert-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_interval + 5)

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_interval):
            try:
                self.check()
            except Exception:
                # The watcher has to outlive surprises: the loaded pair keeps serving either way.
                log.exception("checking the serving certificate %s failed", self.cert_file)
