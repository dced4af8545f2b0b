"""The client side of `pdp lifecycle ...`: a client of the worker's API with the caller's token,
the error handling every client command shares, and following a workflow."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8700"
FINAL = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


class MissingToken(Exception):
    pass


def client(args: argparse.Namespace) -> httpx.Client:
    """A client of the worker's API with the caller's token: --token, else $PDP_LIFECYCLE_TOKEN."""
    token = args.token or os.environ.get("PDP_LIFECYCLE_TOKEN", "")
    if not token:
        raise MissingToken
    return httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]


def talks_to_worker(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A client command: a missing token, an unreachable worker or a refused call is one line on
    stderr (and exit 2 or 1), never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except MissingToken:
            print(
                "error: no token: give --token or set PDP_LIFECYCLE_TOKEN (an admin token is the "
                "worker's PDP_LIFECYCLE_ADMIN_TOKEN; a tenant token is printed once by `create`)",
                file=sys.stderr,
            )
            return 2
        except httpx.HTTPStatusError as exc:
            r = exc.response
            print(
                f"error: {r.request.method} {r.request.url.path}: {r.status_code} {detail(r)}",
                file=sys.stderr,
            )
            return 1
        except httpx.HTTPError as exc:
            print(f"error: cannot reach the lifecycle worker at {args.url}: {exc}", file=sys.stderr)
            return 1

    return run


def request(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> int:
    """One call of the worker's API, its answer shown (errors as talks_to_worker says)."""

    def call(a: argparse.Namespace) -> int:
        with client(a) as c:
            return show(c.request(method, path, **kwargs))

    return talks_to_worker(call)(args)


def show(response: httpx.Response) -> int:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    json.dump(body, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if response.is_success else 1


def add_client_options(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--url and --token of a command that talks to the worker."""
    sp.add_argument(
        "--url",
        default=os.environ.get("PDP_LIFECYCLE_URL", DEFAULT_URL),
        help=f"the worker's API (default: $PDP_LIFECYCLE_URL, else {DEFAULT_URL})",
    )
    sp.add_argument("--token", help="bearer token (default: $PDP_LIFECYCLE_TOKEN)")
    return sp


def decision_line(d: dict[str, Any]) -> str:
    """One line for a request's decision as `GET /v1/workflows/{id}` shows it (pure)."""
    codes = ", ".join(d.get("reason_codes") or []) or "-"
    usage = " usage " + json.dumps(d["usage"], sort_keys=True) if d.get("usage") else ""
    approval = f" approval {d['approval_id']}" if d.get("status") == "awaiting_approval" else ""
    return (
        f"  decision: {d.get('status')} {d.get('outcome') or ''} ({codes}) decision {d.get('decision_id')} "
        f"revision {d.get('bundle_revision')}{usage}{approval}"
    )


def follow(get: Callable[[], dict[str, Any]], timeout: float, out: Any = sys.stdout) -> dict[str, Any]:
    """Poll a workflow, printing each new step, each decision as it is made (a request needing
    approval is decided again after it), and the final status."""
    shown = 0
    decided: tuple[Any, Any] | None = None
    deadline = time.monotonic() + timeout
    while True:
        wf = get()
        for step in wf.get("steps", [])[shown:]:
            out.write(f"  step {shown + 1}: {step}\n")
            shown += 1
        d = wf.get("decision")
        if d and (d.get("decision_id"), d.get("status")) != decided:
            decided = (d.get("decision_id"), d.get("status"))
            out.write(decision_line(d) + "\n")
        if wf.get("status") in FINAL or time.monotonic() > deadline:
            out.write(f"{wf.get('workflow_id')}: {wf.get('status')} {json.dumps(wf.get('output'))[:300]}\n")
            out.flush()
            return wf
        out.flush()
        time.sleep(0.5)
