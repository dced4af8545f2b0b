"""`pdp serve --webhook-workers N`: more processes serving the admission webhook on one port.

As for gRPC workers (test_workers.py), the proof that a worker serves is taken with the main
process frozen (SIGSTOP): a review that still comes back was answered by a worker.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pdp.net.certs import CertPair, issue_client_cert, make_ca
from tests.api.test_workers import alive, child_pids, start
from tests.conftest import self_signed
from tests.substrate.kubernetes.enforcement.conftest import body, own_pool, pod, review
from tests.test_production_mode import free_port


def review_on_a_new_connection(port: int, cert: Path, raw: bytes, client: CertPair | None) -> Any:
    context = ssl.create_default_context(cafile=str(cert))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=1.0)
    try:
        conn.request("POST", "/validate?timeout=1s", raw, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return json.loads(response.read()) if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@pytest.mark.parametrize(
    "names",
    [["--webhook-client-names", "kube-apiserver"], []],
    ids=["uvicorn (client names)", "granian (client CA only)"],
)
def test_a_webhook_worker_answers_on_the_same_port_while_the_main_process_is_frozen(
    workspace: Path, names: list[str]
) -> None:
    """With client names `--webhook-front auto` serves on uvicorn, without them on Granian: the
    workers of both share the port and ask for the client certificate."""
    (workspace / "tls").mkdir()
    cert, key = self_signed(workspace / "tls")
    client_ca = make_ca(workspace / "client-ca")
    apiserver = issue_client_cert(client_ca, workspace / "client-ca" / "apiserver", "kube-apiserver")
    port = free_port()
    served = start(
        workspace,
        *("--engine", "wasm", "--webhook-listen", f"127.0.0.1:{port}"),
        *("--webhook-cert", str(cert), "--webhook-key", str(key), "--webhook-workers", "2"),
        *("--webhook-client-ca", str(client_ca.cert), *names),
    )
    try:
        (worker,) = child_pids(served.proc.pid)
        pinned = pod(
            limits={"nvidia.com/gpu": "1"},
            node_selector={"topology.kubernetes.io/region": "us-east-1"},
            tolerations=own_pool("acme-eu"),
        )
        denied, allowed = (
            body(review(obj, "acme-prod"))
            for obj in (pinned, pod(limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")))
        )
        # `pdp serve` prints its banner while the worker may still be loading its engine (seconds
        # on a loaded machine): until the worker answers, every review reaches the frozen main.
        deadline = time.monotonic() + 60
        by_worker: list[tuple[int, Any]] = []
        while not by_worker and time.monotonic() < deadline:
            os.kill(served.proc.pid, signal.SIGSTOP)
            try:
                answers = [
                    review_on_a_new_connection(port, cert, raw, apiserver) for raw in (denied, allowed) * 3
                ]
                # The worker asks for the client certificate too: without it nothing is answered
                # (a worker that did not would answer the connections the kernel gives it).
                unauthenticated = [review_on_a_new_connection(port, cert, allowed, None) for _ in range(8)]
            finally:
                os.kill(served.proc.pid, signal.SIGCONT)
            by_worker = [(i, a) for i, a in enumerate(answers) if a is not None]
        assert by_worker, "no review came back within 60 s: the worker does not serve the webhook port"
        assert unauthenticated == [None] * 8
        for i, answer in by_worker:
            response = answer["response"]
            if i % 2 == 0:
                assert response["allowed"] is False
                assert "RESIDENCY_VIOLATION" in response["status"]["message"]
            else:
                assert response["allowed"] is True
    finally:
        served.proc.terminate()
        served.proc.wait(timeout=30)
    assert not alive(worker), "the webhook worker outlived the server"


def test_beside_the_extender_every_webhook_process_is_a_worker(workspace: Path) -> None:
    """With the extender in `pdp serve`, its filters hold the main process's GIL for milliseconds:
    the webhook is served by worker processes alone, so with the main process frozen every
    review on a new connection is still answered (before, the kernel gave it some of them)."""
    (workspace / "tls").mkdir()
    cert, key = self_signed(workspace / "tls")
    port = free_port()
    served = start(
        workspace,
        *("--engine", "wasm", "--webhook-listen", f"127.0.0.1:{port}"),
        *("--webhook-cert", str(cert), "--webhook-key", str(key), "--webhook-workers", "2"),
        *("--extender-listen", f"127.0.0.1:{free_port()}"),
        *("--extender-cert", str(cert), "--extender-key", str(key)),
    )
    allowed = body(review(pod(limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")), "acme-prod"))
    try:
        workers = child_pids(served.proc.pid)
        assert len(workers) == 2, workers
        os.kill(served.proc.pid, signal.SIGSTOP)
        try:
            answers = [review_on_a_new_connection(port, cert, allowed, None) for _ in range(16)]
        finally:
            os.kill(served.proc.pid, signal.SIGCONT)
        assert all(a is not None and a["response"]["allowed"] for a in answers), answers
    finally:
        served.proc.terminate()
        served.proc.wait(timeout=30)
    assert not any(alive(w) for w in workers), "a webhook worker outlived the server"


def _webhook_reviews(metrics_url: str) -> tuple[float, float]:
    """The reviews `/metrics` counts (requests, and the latency histogram's count)."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    requests = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gpupaas_pdp_webhook_requests_total{")
    )
    timed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gpupaas_pdp_webhook_request_duration_seconds_count{")
    )
    return requests, timed


def test_metrics_count_the_reviews_of_every_webhook_process(workspace: Path) -> None:
    """With two processes on the port, the kernel spreads new connections between them; the main
    process's `/metrics` counts every review, its worker's too (prometheus_client's multiprocess
    mode, pdp/net/metrics_processes.py), where it used to count its own share only."""
    (workspace / "tls").mkdir()
    cert, key = self_signed(workspace / "tls")
    port, metrics = free_port(), free_port()
    served = start(
        workspace,
        *("--engine", "wasm", "--webhook-listen", f"127.0.0.1:{port}"),
        *("--webhook-cert", str(cert), "--webhook-key", str(key), "--webhook-workers", "2"),
        *("--metrics-listen", f"127.0.0.1:{metrics}"),
    )
    metrics_url = f"http://127.0.0.1:{metrics}/metrics"
    allowed = body(review(pod(limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")), "acme-prod"))
    try:
        (worker,) = child_pids(served.proc.pid)
        # Until the worker has loaded its engine, every review reaches the main process: wait for
        # the worker to answer one (the main process frozen), as the test above does.
        deadline = time.monotonic() + 60
        while True:
            os.kill(served.proc.pid, signal.SIGSTOP)
            try:
                answered = review_on_a_new_connection(port, cert, allowed, None)
            finally:
                os.kill(served.proc.pid, signal.SIGCONT)
            if answered is not None:
                break
            assert time.monotonic() < deadline, "the worker never answered"
        time.sleep(1.5)  # a review sent to the frozen main process is answered (and counted) now
        before = _webhook_reviews(metrics_url)
        sent = 40
        answers = [review_on_a_new_connection(port, cert, allowed, None) for _ in range(sent)]
        assert all(a is not None and a["response"]["allowed"] for a in answers), answers
        after = _webhook_reviews(metrics_url)
        assert (after[0] - before[0], after[1] - before[1]) == (sent, sent), (before, after)
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        assert "gpupaas_pdp_bundle_age_seconds " in text
        assert 'gpupaas_pdp_bundle_info{revision="' in text
    finally:
        served.proc.terminate()
        served.proc.wait(timeout=30)
    assert not alive(worker), "the webhook worker outlived the server"
