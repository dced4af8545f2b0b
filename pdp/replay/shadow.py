"""Shadow evaluation: a candidate bundle decides live traffic beside the active revision, off the
answer path, and its disagreements are counted and logged.

`DecisionPoint.shadow` hands each answered decision to `ShadowEvaluator.offer`, which only puts it
on a bounded queue (a full queue drops it and counts `gpupaas_pdp_shadow_dropped_total`): the
answer never waits for the candidate and is never changed by it. One thread takes what is queued,
decides it on the candidate (the wasm engine, batched, as `pdp replay` does) and compares.
Disagreements go to `gpupaas_pdp_shadow_disagreements_total{change}` and, one JSON change entry a
line, to the shadow log, which `pdp replay --shadow-log FILE` reports like a replay.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pdp.decision import ENGINE_POLICY, Decision
from pdp.engine.wasm import WasmBundle, WasmEngine
from pdp.metrics import SHADOW_DISAGREEMENTS, SHADOW_DROPPED, SHADOW_EVALUATIONS
from pdp.records.model import timestamp
from pdp.replay.compare import Change, Side, changes_between
from pdp.replay.run import decide_all

log = logging.getLogger(__name__)

_BATCH = 64
_IDLE_SECONDS = 0.2


class ShadowError(ValueError):
    """The shadow bundle cannot be fetched or loaded; names the option."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_bundle(url: str, *, insecure: bool = False) -> WasmBundle:
    """A wasm bundle from a file path, file://, or http(s):// (plain http only on loopback or
    with --insecure: the candidate's code must not be swapped on the way)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else url)
        try:
            return WasmBundle.from_tarball(path)
        except Exception as exc:
            raise ShadowError(f"--shadow-bundle {url}: not a wasm bundle: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise ShadowError(f"--shadow-bundle {url}: expected a file, file://, http:// or https:// URL")
    if parsed.scheme == "http" and not (insecure or _loopback(parsed.hostname or "")):
        raise ShadowError(
            f"--shadow-bundle {url}: plain http off loopback; use https:// (or --insecure on a trusted "
            "network)"
        )
    import httpx

    try:
        response = httpx.get(url, timeout=30.0, follow_redirects=False)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ShadowError(f"--shadow-bundle {url}: cannot fetch it: {exc}") from exc
    with tempfile.NamedTemporaryFile(suffix=".tar.gz") as tmp:
        tmp.write(response.content)
        tmp.flush()
        try:
            return WasmBundle.from_tarball(Path(tmp.name))
        except Exception as exc:
            raise ShadowError(f"--shadow-bundle {url}: not a wasm bundle: {exc}") from exc


class ShadowEvaluator:
    def __init__(self, bundle: WasmBundle, log_path: Path | None, *, queue_size: int = 1000) -> None:
        if queue_size < 1:
            raise ShadowError(f"--shadow-queue {queue_size}: must be at least 1")
        self.revision = bundle.revision
        self._engine = WasmEngine(bundle, instances=1)
        self._queue: queue.Queue[tuple[Mapping[str, Any], Decision]] = queue.Queue(maxsize=queue_size)
        self._log = None
        if log_path is not None:
            log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._log = os.fdopen(fd, "a", buffering=1)  # a line at a time: readable while written
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ShadowEvaluator:
        self._thread = threading.Thread(target=self._run, name="shadow-evaluator", daemon=True)
        self._thread.start()
        return self

    def offer(self, intent: Mapping[str, Any], decision: Decision) -> None:
        """On the answer path: queue, or drop and count. Never blocks, never raises."""
        try:
            self._queue.put_nowait((intent, decision))
        except queue.Full:
            SHADOW_DROPPED.inc()

    def _take(self) -> list[tuple[Mapping[str, Any], Decision]]:
        try:
            items = [self._queue.get(timeout=_IDLE_SECONDS)]
        except queue.Empty:
            return []
        while len(items) < _BATCH:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _run(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            items = self._take()
            if not items:
                self._idle.set()
                continue
            self._idle.clear()
            try:
                self.evaluate(items)
            except Exception:  # the shadow must never take the server down
                log.exception("shadow evaluation failed; %d decision(s) not compared", len(items))

    def evaluate(self, items: list[tuple[Mapping[str, Any], Decision]]) -> list[Change]:
        decided = decide_all(self._engine, [dict(intent) for intent, _ in items])
        found = []
        for (_, live), candidate in zip(items, decided, strict=True):
            if any(r.policy == ENGINE_POLICY for r in candidate.reasons):
                SHADOW_EVALUATIONS.labels("error").inc()
                continue
            recorded = Side.of(
                live.outcome.value,
                [r.__dict__ for r in live.reasons],
                dict(live.constraints),
                live.bundle_revision,
            )
            theirs = Side.of(
                candidate.outcome.value,
                [r.__dict__ for r in candidate.reasons],
                dict(candidate.constraints),
                candidate.bundle_revision,
            )
            changes = changes_between(recorded, theirs)
            SHADOW_EVALUATIONS.labels("disagree" if changes else "agree").inc()
            if not changes:
                continue
            change = Change(
                live.decision_id,
                timestamp(live.decided_at),
                live.tenant,
                live.kind,
                tuple(changes),
                recorded,
                theirs,
            )
            for kind in changes:
                SHADOW_DISAGREEMENTS.labels(kind).inc()
            if self._log is not None:
                self._log.write(json.dumps(change.as_json(), separators=(",", ":")) + "\n")
            found.append(change)
        return found

    def wait_idle(self, timeout: float) -> bool:
        """Until everything queued so far was compared (tests, a clean stop)."""
        return self._idle.wait(timeout) and self._queue.empty()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._engine.close()
        if self._log is not None:
            self._log.close()


def add_shadow_options(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("shadow evaluation of a candidate policy (docs/policy-changes.md)")
    g.add_argument(
        "--shadow-bundle",
        metavar="URL",
        help="a candidate wasm bundle (file, file://, https://) decided beside the active revision on "
        "live traffic, never changing an answer; disagreements counted and logged",
    )
    g.add_argument(
        "--shadow-log",
        type=Path,
        help="where disagreements go, one JSON change a line, read by `pdp replay --shadow-log` "
        "(default <state>/shadow.jsonl)",
    )
    g.add_argument(
        "--shadow-queue",
        type=int,
        default=1000,
        metavar="N",
        help="decisions waiting for the shadow at most; more are dropped and counted (default 1000)",
    )


def start_shadow(args: argparse.Namespace, point: Any) -> ShadowEvaluator | None:
    """`--shadow-bundle`: the evaluator, started and attached to `point` (None without it).
    Only this process's decisions are shadowed (with --workers N, its share of the traffic)."""
    if not getattr(args, "shadow_bundle", None):
        return None
    log_path = args.shadow_log or args.state / "shadow.jsonl"
    try:
        bundle = fetch_bundle(args.shadow_bundle, insecure=bool(getattr(args, "insecure", False)))
        shadow = ShadowEvaluator(bundle, log_path, queue_size=args.shadow_queue).start()
    except (ShadowError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    point.shadow = shadow.offer
    print(f"shadow evaluation of bundle {bundle.revision} (disagreements to {log_path})", flush=True)
    return shadow
