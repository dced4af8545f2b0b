"""The listening socket of a served front (serving/)."""

from __future__ import annotations

import socket

from pdp.net.listen import ListenError


def listening_socket(
    host: str, port: int, *, reuse_port: bool = False, option: str = "--listen"
) -> socket.socket:
    """Bound (not yet listening) for uvicorn. `reuse_port`: other processes bind the same port and
    the kernel spreads new connections over them. A port that cannot be bound (taken, not an
    address of this host, privileged) is a ListenError naming `option` and the address."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Inherited by accepted connections (uvloop sets it on each too): a response is headers
        # then body, and with Nagle the body waited ~40 ms for the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError(f"{option} {address}: cannot listen there: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock
