"""The local decision log's commits made by a child process, so that a server's decisions do not
wait for them.

Why: a process decides on one event loop, and every Python thread of it shares one interpreter
lock. The log's writer thread chained, bound and inserted each record under that lock (SQLite
itself lets it go only while it steps), so the loop waited for the log on every batch: at a
webhook's saturation over HTTP/2, skipping the commits altogether served 10-20% more reviews
(bench/results/webhook-capacity-2026-12-05.md). Here the writer thread only pickles each batch to
a child process, which chains and commits it to the same file with its own connection and
answers with the chain hashes for the checkpoints; the thread waits for the answer with the lock
released. The parent keeps its own connection for everything else (reads, checkpoints, pruning).

A child that dies is started again at the next commit. One that died after committing a batch but
before answering gets the batch again, marked as resent, and commits only its records not already
in the file, so no record is lost or written twice.

Run as `python -m pdp.records.committer`: it reads the log's path, then batches, from stdin (both
ends are this module, over the parent's private pipes) and answers on stdout.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from pdp.records.intents import IntentRow
from pdp.records.sqlite import SqliteStore

COMMAND = (sys.executable, "-m", "pdp.records.committer")


class CommitFailed(Exception):
    """The child could not commit a batch (it answered why, or ended without answering); the
    batch is not acknowledged and the decision log keeps it for its next round."""


def _send(stream: IO[bytes], message: Any) -> None:
    pickle.dump(message, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()


class ProcessCommittedStore(SqliteStore):
    """The local log (SqliteStore) whose `commit` a child process makes. `command`: the child's
    program (tests give one that fails on purpose)."""

    def __init__(self, path: Path, command: Sequence[str] = COMMAND) -> None:
        super().__init__(path)
        self._path = path
        self._command = list(command)
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        # A batch was sent and no answer came: it may be committed (the child died after COMMIT)
        self._unanswered = False
        try:
            self._start()
        except BaseException:
            super().close()
            raise

    @property
    def child_pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def _start(self) -> None:
        # A session of its own: a Ctrl-C or a signal to the server's process group does not end it
        # before the server's last flush; it ends when the server closes its stdin (or dies).
        child = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        self._child = child
        try:
            status, value = self._ask(str(self._path))
        except CommitFailed:
            self._stop()
            raise
        if status != "ok":
            self._stop()
            raise CommitFailed(f"decision log {self.location}: its committer did not open it: {value}")

    def _ask(self, message: Any) -> tuple[str, Any]:
        child = self._child
        assert child is not None and child.stdin is not None and child.stdout is not None
        try:
            _send(child.stdin, message)
            status, value = pickle.load(child.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise CommitFailed(
                f"decision log {self.location}: its committer process ended "
                f"(exit {child.poll()}): {type(exc).__name__}"
            ) from exc
        return str(status), value

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def commit(
        self, batch: list[tuple[Any, ...]], intents: list[IntentRow], *, resent: bool = False
    ) -> tuple[int, str, list[str]]:
        with self._lock:
            if self._child is None or self._child.poll() is not None:
                self._stop()
                self._start()
            resent = resent or self._unanswered
            self._unanswered = True
            try:
                status, value = self._ask((batch, intents, resent))
            except CommitFailed:
                self._stop()
                raise
            self._unanswered = False  # answered: committed, or rolled back
            if status != "ok":
                raise CommitFailed(f"decision log {self.location}: {value}")
            first, before, hashes = value
            return int(first), str(before), list(hashes)

    def close(self) -> None:
        with self._lock:
            self._stop()
        super().close()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child: open the log named by the first message, then commit each batch sent and
    answer ("ok", (first, before, hashes)) or ("error", why), until the parent closes the pipe."""
    try:
        path = pickle.load(requests)
    except EOFError:
        return
    try:
        store = SqliteStore(Path(path))
    except Exception as exc:
        _send(answers, ("error", f"{type(exc).__name__}: {exc}"))
        return
    _send(answers, ("ok", store.location))
    try:
        while True:
            try:
                batch, intents, resent = pickle.load(requests)
            except EOFError:
                return
            try:
                result = store.commit(batch, intents, resent=resent)
            except Exception as exc:  # rolled back: the parent keeps the batch and sends it again
                _send(answers, ("error", f"{type(exc).__name__}: {exc}"))
            else:
                _send(answers, ("ok", result))
    finally:
        store.close()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent flushes on Ctrl-C, then closes us
    answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout carries the answers: nothing else may print there
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
