"""`pdp lifecycle rollout start|status|rollback|policy`: gated policy rollouts through the worker's
API (admin token; docs/policy-changes.md)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

Client = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
Request = Callable[..., int]
# Where `start --wait` stops waiting: the rollout needs someone, or it is done.
WAIT_UNTIL = ("awaiting_approval", "active", "rejected", "failed", "superseded", "rolled_back")


def _line(view: dict[str, Any]) -> str:
    counts = (view.get("report") or {}).get("counts") or {}
    changed = ", ".join(f"{k} {n}" for k, n in counts.items() if n) or "no change"
    approval = f" approval {view['approval_id']}" if view.get("phase") == "awaiting_approval" else ""
    error = f": {view['error']}" if view.get("error") else ""
    return (
        f"{view.get('rollout_id')}: {view.get('phase')} {view.get('from_revision') or '-'} -> "
        f"{view.get('to_revision') or '-'} (replay: {changed}){approval}{error}"
    )


def _start(args: argparse.Namespace, client: Callable[[argparse.Namespace], httpx.Client]) -> int:
    body: dict[str, Any] = {"candidate": args.candidate, "watch_seconds": args.watch}
    if args.repo:
        body["repo"] = args.repo
    if args.max_disagreement is not None:
        body["max_disagreement_rate"] = args.max_disagreement
        body["min_shadow_samples"] = args.min_samples
    with client(args) as c:
        r = c.post("/v1/policy/rollouts", json=body, timeout=120)
        r.raise_for_status()
        view: dict[str, Any] = r.json()
        deadline = time.monotonic() + args.timeout
        while args.wait and view.get("phase") not in WAIT_UNTIL and time.monotonic() < deadline:
            time.sleep(0.5)
            got = c.get(f"/v1/policy/rollouts/{view['rollout_id']}")
            got.raise_for_status()
            view = got.json()
    print(json.dumps(view, indent=2) if args.json else _line(view))
    return 1 if view.get("phase") in ("failed", "rejected", "superseded") else 0


def add_rollout_parsers(
    lsub: Any,
    client: Client,
    request: Request,
    http: Callable[[argparse.Namespace], httpx.Client],
    talks: Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]],
) -> None:
    ro = lsub.add_parser("rollout", help="roll out a new policy revision, gated by its replay report")
    rsub = ro.add_subparsers(dest="rollout_command", required=True)
    st = client(rsub.add_parser("start", help="build, replay, approve if decisions flip, activate"))
    st.add_argument("candidate", help="a policy folder on the worker's machine, or a git ref of --repo")
    st.add_argument("--repo", help="the git repository of a ref (default: the worker's checkout)")
    st.add_argument(
        "--watch", type=float, default=0.0, metavar="SECONDS", help="shadow window after activation"
    )
    st.add_argument(
        "--max-disagreement", type=float, metavar="RATE", help="roll back above this shadow disagreement rate"
    )
    st.add_argument("--min-samples", type=int, default=20, help="shadowed decisions before the rate counts")
    st.add_argument("--wait", action="store_true", help="until it needs approval or is done")
    st.add_argument("--timeout", type=float, default=600.0)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=talks(lambda a: _start(a, http)))
    ss = client(rsub.add_parser("status", help="a rollout's phase, revisions, report and rollback"))
    ss.add_argument("rollout_id")
    ss.set_defaults(func=lambda a: request(a, "GET", f"/v1/policy/rollouts/{a.rollout_id}"))
    rb = client(rsub.add_parser("rollback", help="back to the policy tree active before the rollout"))
    rb.add_argument("rollout_id")
    rb.add_argument("--reason", default="")
    rb.set_defaults(
        func=lambda a: request(
            a, "POST", f"/v1/policy/rollouts/{a.rollout_id}/rollback", json={"reason": a.reason}, timeout=120
        )
    )
    ac = client(rsub.add_parser("active", help="the policy tree and revision the lifecycle builds from"))
    ac.set_defaults(func=lambda a: request(a, "GET", "/v1/policy"))
