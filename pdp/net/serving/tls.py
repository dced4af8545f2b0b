"""The TLS context of a served front, whose certificate can change under it (serving/)."""

from __future__ import annotations

import ssl
from typing import Any

from pdp.net.servingcert import ServingCertificate, require_client_certificate


def switching_context(certificate: ServingCertificate) -> ssl.SSLContext:
    """A server context whose handshakes continue on `certificate`'s current context.

    OpenSSL runs the SNI callback on every ClientHello, with or without a server name (clients
    connecting to an IP send none), before it picks the certificate; so each new connection gets
    the pair current at that moment, and open connections keep the one they started with."""
    switching = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    switching.minimum_version = ssl.TLSVersion.TLSv1_2
    switching.load_cert_chain(certificate.cert_file, certificate.key_file)
    if certificate.client_auth is not None:
        # A connection keeps the verify mode of the context it began with (switching the context
        # does not change it), and verifies against the trust store of the context switched to:
        # both ask for client certificates, and a reloaded CA applies to new connections.
        require_client_certificate(switching, certificate.client_auth.ca_file.read_bytes())

    def to_current(connection: Any, server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = certificate.context

    switching.sni_callback = to_current
    return switching
