"""Ports for the servers the tests start (OPA, apiservers, workers, slurmctld...).

Chosen below the kernel's ephemeral range: a port taken with `bind(0)` comes from that range, so
between choosing it and the server binding it, the source port of any client connection on the
machine could take it ("address already in use" under load). Below the range only servers bind,
and this process never hands out the same port twice.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_given: set[int] = set()
_random = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    high = _ephemeral_low()
    low = max(1024, high - 12000)
    for _ in range(2000):
        port = _random.randrange(low, high)
        if port in _given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port between {low} and {high}")
