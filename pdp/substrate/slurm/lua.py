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

from pdp.substrate.slurm.fleet import partitions

SCRIPT = "job_submit.lua"
SETTINGS = "gpupaas-pdp.lua"


@dataclass(frozen=True)
class HookSettings:
    """pdp_url: the PDP's HTTP API, plain http on the slurmctld host's loopback (lua-socket speaks
    no TLS; a PDP elsewhere sits behind a local TLS-terminating proxy or sidecar).
    timeout: seconds one submission may wait for the PDP, connection included.
    cache_seconds: how long an answer is reused for a job with the same account, GPU type,
    GPUs, nodes and partitions (0: ask for every job).
    token_file: the bearer token, read at each call so a rotated file takes effect at once."""

    pdp_url: str
    timeout: float = 0.5
    cache_seconds: float = 5.0
    token_file: Path | None = None

    def __post_init__(self) -> None:
        url = urlsplit(self.pdp_url)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"pdp_url {self.pdp_url!r}: expected http://HOST:PORT (loopback)")
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
    url = urlsplit(settings.pdp_url)
    parts = partitions(fleet)
    table = {
        "host": url.hostname,
        "port": url.port,
        "path": url.path.rstrip("/"),
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
