"""`pdp serve --workers N`: more processes on the same gRPC port, each deciding on its own.

The proof that a worker serves is taken with the main process frozen (SIGSTOP): a decision that
still comes back was answered by a worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.translate import decision_from_proto, intent_to_proto
from tests.commands.test_cli import config_args, pdp
from tests.conftest import EXAMPLES
from tests.test_production_mode import free_port

INTENT = json.loads((EXAMPLES / "intents" / "01-acme-eu-deploy-eu.json").read_text())


class Served:
    def __init__(self, proc: subprocess.Popen[str], addr: str, workers: list[int]) -> None:
        self.proc, self.addr, self.workers = proc, addr, workers


def start(workspace: Path, *extra: str) -> Served:
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "serve", *config_args(workspace), "--listen", addr, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("pdp serving on"):
            # "N more PDP worker processes on ADDR: [pids]" (other lines may name paths with "worker")
            pids = next(
                (
                    re.findall(r"\d+", li.rsplit(": ", 1)[-1])
                    for li in lines
                    if "more PDP worker processes" in li
                ),
                [],
            )
            return Served(proc, addr, [int(p) for p in pids])
    proc.kill()
    raise AssertionError("pdp serve did not start:\n" + "".join(lines))


@pytest.fixture()
def served(workspace: Path) -> Iterator[Served]:
    running = start(workspace, "--engine", "wasm", "--workers", "2")
    yield running
    os.kill(running.proc.pid, signal.SIGCONT)
    running.proc.terminate()
    running.proc.wait(timeout=20)


def decide_on_a_new_connection(addr: str, timeout: float = 1.0) -> dict[str, object] | None:
    """One decision on a fresh connection (the kernel picks the process per connection). gRPC
    shares connections between the channels of a process unless told not to, so without a local
    subchannel pool the next "new" channel could ride the last one's connection to the frozen
    main process, attempt after attempt."""
    channel = grpc.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        request = pb.DecideRequest(intent=intent_to_proto(INTENT))
        reply = pdp_pb2_grpc.DecisionServiceStub(channel).Decide(request, timeout=timeout)
        return decision_from_proto(reply.decision)
    except grpc.RpcError:
        return None
    finally:
        channel.close()


def decisions_while_main_is_frozen(served: Served, attempts: int = 20) -> list[dict[str, object]]:
    os.kill(served.proc.pid, signal.SIGSTOP)
    try:
        answers = [decide_on_a_new_connection(served.addr) for _ in range(attempts)]
    finally:
        os.kill(served.proc.pid, signal.SIGCONT)
    return [a for a in answers if a is not None]


def worker_answers(served: Served, within: float = 60.0) -> list[dict[str, object]]:
    """Decisions from a worker, once one answers: `pdp serve` prints its banner while its workers
    are still loading their engine, which takes seconds on a loaded machine."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if answered := decisions_while_main_is_frozen(served, attempts=6):
            return answered
        time.sleep(0.2)
    pytest.fail(f"no worker answered within {within:.0f} s: the worker does not serve the port")


def children_of(parent: int) -> list[tuple[int, bytes]]:
    """(pid, command line) of the children of any thread of `parent` (/proc/<pid>/task/<pid>/
    children lists only those of the main thread, and workers are restarted from a supervising
    thread)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == parent:
                out.append((int(entry.name), command))
    return out


def child_pids(parent: int) -> list[int]:
    """The worker processes of `parent`: its children but its decision log's committer
    (pdp/records/committer.py)."""
    return [pid for pid, command in children_of(parent) if b"pdp.records.committer" not in command]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # it ended between the two looks
        return False
    return state != "Z"


def test_a_worker_answers_on_the_same_port_while_the_main_process_is_frozen(served: Served) -> None:
    assert len(served.workers) == 1
    answered = worker_answers(served)
    assert all(d["outcome"] == "ALLOW" for d in answered)


def test_a_worker_loads_a_new_bundle_revision(served: Served, workspace: Path) -> None:
    before = worker_answers(served)
    tenant = workspace / "examples" / "tenants" / "globex.yaml"
    doc = yaml.safe_load(tenant.read_text())
    doc["tenant"]["entitlements"]["H100-80GB"] += 1
    tenant.write_text(yaml.safe_dump(doc))
    built = pdp("build", *config_args(workspace), "--engine", "wasm")
    assert built.returncode == 0, built.stderr
    revision = json.loads(built.stdout)["revision"]
    assert revision != before[0]["bundle_revision"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        seen = {d["bundle_revision"] for d in decisions_while_main_is_frozen(served, attempts=6)}
        if seen == {revision}:
            return
        time.sleep(0.5)
    pytest.fail(f"the worker still answers with {seen}, not the new revision {revision}")


def test_a_killed_worker_is_restarted_and_workers_stop_with_the_server(workspace: Path) -> None:
    running = start(workspace, "--engine", "wasm", "--workers", "2")
    try:
        (worker,) = running.workers
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 20
        replacement = None
        while time.monotonic() < deadline and replacement is None:
            replacement = next((c for c in child_pids(running.proc.pid) if c != worker and alive(c)), None)
            time.sleep(0.2)
        assert replacement is not None, "the killed worker was not restarted"
        worker_answers(running)
    finally:
        running.proc.terminate()
        running.proc.wait(timeout=20)
    deadline = time.monotonic() + 5
    while alive(replacement) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(replacement), "a worker outlived the server"


def test_worker_processes_write_one_verifiable_decision_log(workspace: Path) -> None:
    """Both processes append to the one decision log and checkpoint what they commit into a sink
    outside the state folder; `pdp records verify` holds the whole log against it."""
    sink = f"file:{workspace / 'audit-host' / 'decisions.jsonl'}"
    running = start(workspace, "--engine", "wasm", "--workers", "2", "--records-checkpoints", sink)
    try:
        by_worker = worker_answers(running)
        by_any = [d for d in (decide_on_a_new_connection(running.addr) for _ in range(10)) if d]
        assert by_worker and by_any
    finally:
        running.proc.terminate()
        running.proc.wait(timeout=20)
    trusted = workspace / "audit-host" / "trusted.pem"
    trusted.write_text(pdp("records", "public-key", "--state", str(workspace / "state")).stdout)
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "records", "verify", "--state", str(workspace / "state"),
         "--checkpoints", sink, "--trusted-key", str(trusted)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    answered = len(by_worker) + len(by_any)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(
        f"ok: the decision log verifies ({answered} records; checkpointed to record {answered} in {sink}"
    ), out.stdout
