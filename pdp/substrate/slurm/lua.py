"""The enforcement hook: job_submit.lua (shipped beside this module) and its settings file,
gpupaas-pdp.lua, rendered from the fleet and where the PDP's HTTP API listens (pure, plus a small
installer that writes both next to slurm.conf)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pdp.net.listen import is_loopback
from pdp.substrate.slurm.fleet import partitions

SCRIPT = "job_submit.lua"
SETTINGS = "gpupaas-pdp.lua"


@dataclass(frozen=True, kw_only=True)
class HookSettings:
    """Where the hook reaches the PDP's HTTP API, one of:
    pdp_socket: its unix socket on the slurmctld host (`pdp serve --http-listen unix:PATH`), in a
    folder only the PDP's user may write, so nobody else can answer in its place while it is down.
    pdp_url: http://HOST:PORT on loopback, only with insecure_loopback_http: any local process
    that takes the port while the PDP is down answers for it (lua-socket speaks no TLS).
    timeout: seconds one submission may wait for the PDP, connection included.
    cache_seconds: how long an answer is reused for a job with the same account, GPU type,
    GPUs, nodes and partitions, while the PDP answers its readiness check (0: ask for every job).
    token_file: the bearer token, read at each call so a rotated file takes effect at once."""

    pdp_socket: Path | None = None
    pdp_url: str | None = None
    insecure_loopback_http: bool = False
    timeout: float = 0.5
    cache_seconds: float = 5.0
    token_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.pdp_socket is None) == (self.pdp_url is None):
            raise ValueError("give the PDP's pdp_socket, or (with insecure_loopback_http) its pdp_url")
        if self.pdp_socket is not None and (
            not self.pdp_socket.is_absolute() or len(os.fsencode(self.pdp_socket)) >= 108
        ):
            raise ValueError(f"pdp_socket {self.pdp_socket}: expected an absolute path under 108 bytes")
        if self.pdp_url is not None:
            url = urlsplit(self.pdp_url)
            if url.scheme != "http" or not url.hostname or not url.port or not is_loopback(url.hostname):
                raise ValueError(f"pdp_url {self.pdp_url!r}: expected http://HOST:PORT on loopback")
            if not self.insecure_loopback_http:
                raise ValueError(
                    f"pdp_url {self.pdp_url!r}: plain HTTP is answered by whoever holds the port while "
                    "the PDP is down; give pdp_socket, or insecure_loopback_http to accept that"
                )
        if not 0 < self.timeout <= 5:
            raise ValueError(f"timeout {self.timeout}: expected seconds in (0, 5]")
        if self.cache_seconds < 0:
            raise ValueError(f"cache_seconds {self.cache_seconds}: must not be negative")


def _lua(value: Any) -> str:
    """A Lua literal for a JSON-like value (strings are JSON strings, which Lua reads alike for
    the characters used here: names, URLs, paths)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list | tuple):
        return "{ " + ", ".join(_lua(v) for v in value) + " }"
    if isinstance(value, Mapping):
        items = ", ".join(f"[{_lua(str(k))}] = {_lua(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def render_settings(fleet: Mapping[str, Any], settings: HookSettings) -> str:
    parts = partitions(fleet)
    if settings.pdp_url is not None:
        url = urlsplit(settings.pdp_url)
        channel: dict[str, Any] = {
            "host": url.hostname,
            "port": url.port,
            "path": url.path.rstrip("/"),
            "insecure_loopback_http": True,
        }
    else:
        channel = {"socket": str(settings.pdp_socket)}
    table = {
        **channel,
        "timeout": settings.timeout,
        "cache_seconds": settings.cache_seconds,
        "token_file": str(settings.token_file) if settings.token_file else None,
        "partition_names": [p.name for p in parts],
        "partitions": {
            p.name: {
                "cluster": p.cluster,
                "pool": p.pool,
                "gres_type": p.gres_type,
                "isolation": p.isolation,
                "sharing": p.sharing,
            }
            for p in parts
        },
        "classes": {p.gres_type: p.gpu_class for p in parts},
        "gres_types": sorted({p.gres_type for p in parts}),
    }
    lines = [f"  {key} = {_lua(value)}," for key, value in table.items() if value is not None]
    return (
        "-- Rendered by pdp/substrate/slurm/lua.py from the fleet; do not edit.\nreturn {\n"
        + "\n".join(lines)
        + "\n}\n"
    )


def script_text() -> str:
    return resources.files(__package__).joinpath(SCRIPT).read_text(encoding="utf-8")


def install(conf_dir: Path, fleet: Mapping[str, Any], settings: HookSettings) -> None:
    """Write job_submit.lua and gpupaas-pdp.lua into slurm.conf's folder (then `scontrol
    reconfigure`); each file is replaced whole, so slurmctld never reads half of one."""
    for name, text in ((SETTINGS, render_settings(fleet, settings)), (SCRIPT, script_text())):
        target = conf_dir / name
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        tmp.replace(target)
