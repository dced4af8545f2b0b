"""Client-certificate authentication (mTLS) for the fronts Kubernetes components call: the
admission webhook (kube-apiserver presents the client certificate of its admission
configuration's kubeconfig) and the scheduler extender (kube-scheduler presents the one of its
extender `tlsConfig`).

With a client CA the TLS handshake requires a client certificate signed by it (CERT_REQUIRED:
OpenSSL refuses the handshake, nothing is read). The CA is reloaded with the serving pair when
its file changes (servingcert.py), so a rotated CA needs no restart. With `names` the
certificate must also name one of them, as its subject CN or a DNS subject alternative name: a
CA that also signs other clients (a platform CA) then admits only the component meant. That check
runs once the handshake is done, before any request is read: Python's ssl offers no verification
callback, and a connection refused there never reaches the routes.

Off loopback a front without a client CA needs an explicit `--…-allow-unauthenticated`
(`require_client_auth`), as the decision API needs a token file: anyone who can reach the port
could otherwise ask it to admit or place anything.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdp.net.listen import ListenError, is_loopback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientAuth:
    ca_file: Path
    """PEM bundle of the CAs whose client certificates are accepted."""
    names: frozenset[str] = frozenset()
    """Subject CNs or DNS SANs accepted; empty: any certificate the CA signed."""

    def admits(self, peercert: Any) -> bool:
        """Whether a verified peer certificate (`SSLObject.getpeercert()`) names an allowed client."""
        if not peercert:
            return False
        return not self.names or bool(self.names & peer_names(peercert))

    def caller(self, peercert: Any) -> str:
        """Who an admitted certificate says called, as the decision log records it (`principal`):
        `substrate:NAME`, NAME its subject CN, or else its first DNS SAN (with `names`, the first
        of those that is allowed). Kubernetes components are the platform's substrate."""
        cns = [v for rdn in peercert.get("subject", ()) for key, v in rdn if key == "commonName"]
        sans = [v for kind, v in peercert.get("subjectAltName", ()) if kind == "DNS"]
        named = [n for n in cns + sans if not self.names or n in self.names]
        return f"substrate:{named[0]}" if named else "substrate:(a certificate naming no one)"


def peer_names(peercert: Any) -> set[str]:
    """The subject CNs and DNS SANs of a certificate as `getpeercert()` returns it."""
    names = {value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names.update(value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS")
    return names


def client_auth(ca_file: Path | None, names: Iterable[str] | None, names_option: str) -> ClientAuth | None:
    """The options' ClientAuth; names without a CA is an error naming `names_option`."""
    allowed = frozenset(n.strip() for item in names or () for n in item.split(",") if n.strip())
    if ca_file is None:
        if allowed:
            raise ListenError(f"{names_option} needs the client CA option beside it")
        return None
    return ClientAuth(Path(ca_file), allowed)


def require_client_auth(
    what: str, host: str, auth: ClientAuth | None, *, ca_option: str, allow_option: str, allowed: bool
) -> None:
    """Refuse a front (`what`, e.g. `--webhook-listen 0.0.0.0:8443`) on `host` off loopback without
    client authentication, unless the operator said `allow_option`; then warn on every start, as
    plaintext with --insecure does, so that an open front is never silent."""
    if auth is not None or is_loopback(host):
        return
    if not allowed:
        raise ListenError(
            f"{what} is not loopback: give {ca_option} (the CA of the client certificate its caller "
            f"presents) so that only that caller is answered, or {allow_option} to answer any client"
        )
    log.warning("%s: answering any client off loopback because of %s", what, allow_option)


def add_client_auth_options(sp: argparse.ArgumentParser, front: str, caller: str) -> None:
    """--FRONT-client-ca, --FRONT-client-names and --FRONT-allow-unauthenticated."""
    sp.add_argument(
        f"--{front}-client-ca",
        type=Path,
        help=f"PEM CA bundle: answer only clients presenting a certificate it signed ({caller}); "
        "reloaded when the file changes",
    )
    sp.add_argument(
        f"--{front}-client-names",
        action="append",
        metavar="NAME[,NAME]",
        help=f"with --{front}-client-ca: the client certificate's subject CN or a DNS SAN must be one "
        "of these (repeatable)",
    )
    sp.add_argument(
        f"--{front}-allow-unauthenticated",
        action="store_true",
        help=f"off loopback, serve the {front} without --{front}-client-ca: any client reaching the "
        "port is answered",
    )
