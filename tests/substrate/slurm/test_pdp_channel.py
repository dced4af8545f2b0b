"""How the hook reaches the PDP (issue 28, hole 3): a cached ALLOW is not used once the PDP is
gone, and a process of another user that takes the PDP's place while it is down cannot answer for
it. Each test runs its own HTTP decision API over the session's decision point, so stopping it
leaves the shared one alone."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdp.api.http_server import HttpDecisionServer
from pdp.api.token_file import BearerTokens
from pdp.substrate.slurm import lua
from tests.substrate.slurm.conftest import FLEET, SlurmWorld
from tests.substrate.slurm.test_enforcement import H100, job_id

# Answers every batch with one ALLOW per intent: what a squatter would say.
SQUATTER = textwrap.dedent("""\
    import json, os, socket, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Allow(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
            self.wfile.write(b"{}")
        def do_POST(self):
            intents = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["intents"]
            body = json.dumps({"decisions": [
                {"outcome": "ALLOW", "decision_id": "squatter", "reasons": [], "constraints": {}}
                for _ in intents]}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)

    class Server(HTTPServer):
        allow_reuse_address = True
        def server_bind(self):
            if self.address_family == socket.AF_UNIX:
                try:
                    os.unlink(self.server_address)
                except FileNotFoundError:
                    pass
            super().server_bind()
        def get_request(self):
            conn, _ = self.socket.accept()
            return conn, ("squatter", 0)

    where = sys.argv[1]
    if where.startswith("/"):
        Server.address_family = socket.AF_UNIX
        address = where
    else:
        host, port = where.rsplit(":", 1)
        address = (host, int(port))
    try:
        server = Server(address, Allow)
    except OSError as exc:
        print(f"cannot take {where}: {exc}", flush=True)
        sys.exit(3)
    print("listening", flush=True)
    server.serve_forever()
""")


@contextlib.contextmanager
def own_pdp(slurm: SlurmWorld, cache_seconds: float) -> Iterator[tuple[HttpDecisionServer, lua.HookSettings]]:
    """An HTTP decision API for this test alone, as deployed (docs/slurm.md): its unix socket in a
    folder only its user may write, on a path others may reach (the squatter must get as far as
    the folder), and the hook's settings to reach it."""
    base = Path(tempfile.mkdtemp(prefix="pdp-", dir="/tmp"))
    base.chmod(0o755)
    (base / "run").mkdir(mode=0o755)
    try:
        tokens = BearerTokens(slurm.token_file)
        path = base / "run" / "http.sock"
        with HttpDecisionServer(
            slurm.stack.point, unix_socket=path, tokens=tokens, engine_ready=slurm.stack.engine_ready
        ) as server:
            hook = lua.HookSettings(
                pdp_socket=path, timeout=1.0, cache_seconds=cache_seconds, token_file=slurm.token_file
            )
            yield server, hook
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _submit(slurm: SlurmWorld) -> subprocess.CompletedProcess[str]:
    return slurm.cluster.sbatch("acme-eu", f"{H100}:1", name="same")


def test_a_cached_allow_is_not_used_once_the_pdp_is_gone(slurm: SlurmWorld, restore_hook: object) -> None:
    with own_pdp(slurm, cache_seconds=600) as (server, hook):
        lua.install(slurm.cluster.etc, FLEET, hook)
        job_id(_submit(slurm))  # decided and cached
        server.stop()
        done = _submit(slurm)  # the same job, the PDP stopped
    assert done.returncode != 0, "a cached ALLOW admitted a GPU job while the PDP was down"
    assert "GPU job refused, fail closed" in done.stderr


@contextlib.contextmanager
def squatter(where: str) -> Iterator[subprocess.Popen[str]]:
    """The squatter, as another user (nobody) where the tests run as root."""
    as_other = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    # The system's Python: nobody may not enter /root, where the venv's interpreter may live.
    python = (shutil.which("python3", path="/usr/bin:/bin") if as_other else None) or sys.executable
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(SQUATTER)
    os.chmod(script.name, 0o644)
    process = subprocess.Popen(
        [*as_other, python, "-I", script.name, where], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        process.first_line = process.stdout.readline()  # type: ignore[attr-defined]
        yield process
    finally:
        process.kill()
        process.wait()
        os.unlink(script.name)


def _where(hook: lua.HookSettings) -> str:
    if hook.pdp_socket is not None:
        return str(hook.pdp_socket)
    assert hook.pdp_url is not None
    return hook.pdp_url.removeprefix("http://")


def test_a_squatter_cannot_answer_for_the_pdp(slurm: SlurmWorld, restore_hook: object) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the squatter as another user")
    with own_pdp(slurm, cache_seconds=0) as (server, hook):
        lua.install(slurm.cluster.etc, FLEET, hook)
        job_id(_submit(slurm))
        server.stop()
        # The PDP is down; another user's process takes the place the hook reaches it at.
        with squatter(_where(hook)) as process:
            done = _submit(slurm)
            said = process.first_line  # type: ignore[attr-defined]
    assert done.returncode != 0, f"the squatter ({said.strip()}) got a GPU job allowed"
    assert "GPU job refused, fail closed" in done.stderr
    # It did try: the folder kept it out, not a failure of its own.
    assert "Permission denied" in said, said


def test_loopback_http_is_used_only_when_configured_so(slurm: SlurmWorld, restore_hook: object) -> None:
    tokens = BearerTokens(slurm.token_file)
    with HttpDecisionServer(slurm.stack.point, tokens=tokens, engine_ready=slurm.stack.engine_ready) as tcp:
        with pytest.raises(ValueError, match="whoever holds the port"):
            lua.HookSettings(pdp_url=tcp.url, token_file=slurm.token_file)
        hook = lua.HookSettings(pdp_url=tcp.url, insecure_loopback_http=True, token_file=slurm.token_file)
        lua.install(slurm.cluster.etc, FLEET, hook)
        job_id(_submit(slurm))
        # A settings file that names a port without saying so is refused, not used.
        settings = slurm.cluster.etc / lua.SETTINGS
        settings.write_text(settings.read_text().replace("insecure_loopback_http = true,", ""))
        done = _submit(slurm)
    assert done.returncode != 0 and "no loopback HTTP explicitly allowed" in done.stderr, done.stderr
