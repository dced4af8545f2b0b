"""Replay a GPU cluster trace through the whole control plane and write the report.

    python -m bench.fleet                                   # the default trace, both runs
    python -m bench.fleet --nodes N.csv --tasks T.csv --mapping M.yaml --seconds 600 --out R.md

Runs the policy run (PDP in the path) and the scheduler-alone run one after the other on fresh
control planes, then writes the report (markdown, beside it the timelines as PNG) and a JSON of the
figures. Exits 1 when a promise check of the policy run is not 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.fleet.mapping import DEFAULT_MAPPING, Plan, all_at_once, load_mapping, plan
from bench.fleet.plots import timelines
from bench.fleet.promises import CHECKS
from bench.fleet.replay import Failure, Replay
from bench.fleet.report import (
    RunFigures,
    counts,
    histogram,
    render,
    total,
    usage,
    violations_by_check,
)
from bench.fleet.trace import TraceError, read_nodes, read_tasks
from bench.fleet.world import LivingFleet, Timing
from bench.harness import children
from pdp.metrics import PREFIX

TRACE = Path(__file__).resolve().parents[3] / "shared" / "traces" / "alibaba-gpu-v2023"


def one_run(args: argparse.Namespace, the_plan: Plan, work: Path, with_pdp: bool) -> RunFigures:
    timing = Timing()
    name = "pdp" if with_pdp else "plain"

    def log(message: str) -> None:
        print(f"{name}: {message}", file=sys.stderr)

    with LivingFleet(
        work / name,
        the_plan,
        with_pdp,
        timing,
        hold_scheduler=args.saturation,
        scheduler_qps=args.scheduler_qps,
        log=log,
    ) as fleet:
        log(f"cluster up ({len(the_plan.nodes)} nodes); replaying")
        failures = tuple(Failure(0.5, args.fail_nodes) for _ in range(1 if args.fail_nodes else 0))
        result = Replay(
            fleet,
            the_plan,
            args.seconds,
            failures,
            log=log,
            # Saturation: until every pod is bound or found unschedulable, however long that takes.
            settle_seconds=600.0 if args.saturation else 0.0,
        ).run()
        pids = fleet.processes()
        known = set(pids.values())
        for child in children(os.getpid()):
            if child not in known:
                exe = Path(f"/proc/{child}/exe")
                pids[exe.resolve().name if exe.exists() else str(child)] = child
        figures = RunFigures(result, {n: u for n, p in pids.items() if (u := usage(p)) is not None})
        # Every pod's times as the replay saw them, beside the run's logs: what the report sums.
        views = {key: dataclasses.asdict(view) for key, view in result.views.items()}
        (work / name / "pods.json").write_text(json.dumps(views, indent=0, sort_keys=True))
        own = usage(os.getpid())
        if own is not None:
            figures.usage["replayer (this process, cumulative)"] = own
        (work / name / "apiserver-metrics.prom").write_text(fleet.apiserver_metrics())
        if with_pdp:
            # The PDP is a process of its own, started for this run: its metrics are this run's.
            metrics = fleet.metrics()
            # Kept beside the run's logs: the report's quantiles come from these buckets.
            (work / name / "pdp-metrics.prom").write_text(metrics)
            figures.webhook = histogram(metrics, PREFIX + "webhook_request_duration_seconds", {})
            figures.webhook_decisions = histogram(
                metrics, PREFIX + "decision_duration_seconds", {"entry_point": "webhook"}
            )
            figures.extender = histogram(
                metrics, PREFIX + "extender_request_duration_seconds", {"verb": "filter"}
            )
            figures.decisions = total(metrics, PREFIX + "decisions_total")
            figures.preempt = counts(
                metrics, PREFIX + "extender_requests_total", {"verb": "preempt"}, "outcome"
            )
        fleet.copy_logs(work / f"{name}-logs")
    return figures


def _command(argv: list[str] | None) -> str:
    words = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m bench.fleet", *words])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=Path, default=TRACE / "openb_node_list_gpu_node.csv")
    p.add_argument("--tasks", type=Path, default=TRACE / "openb_pod_list_default.csv")
    p.add_argument("--mapping", type=Path, default=DEFAULT_MAPPING)
    p.add_argument(
        "--seconds", type=float, default=300, help="replay length (trace time is compressed into it)"
    )
    p.add_argument("--limit-nodes", type=int, default=0, help="only the first N nodes of the node list")
    p.add_argument("--limit-tasks", type=int, default=0, help="only the first N tasks by creation time")
    p.add_argument(
        "--fail-nodes", type=int, default=3, help="nodes that fail halfway (holding the most enterprise pods)"
    )
    p.add_argument("--runs", default="pdp,plain", help="pdp, plain or both (comma-separated)")
    p.add_argument(
        "--scheduler-qps",
        type=int,
        default=0,
        help="kube-scheduler's client QPS, burst twice that, in both runs (default: its own, 50 and 100)",
    )
    p.add_argument(
        "--saturation",
        action="store_true",
        help="submit every task at once, never delete one: pods bound per second, with and without the PDP",
    )
    p.add_argument("--out", type=Path, default=Path("docs/fleet-simulation.md"))
    p.add_argument("--work", type=Path, default=None, help="folder for the clusters' state and logs")
    args = p.parse_args(argv)
    try:
        nodes = read_nodes(args.nodes)
        tasks = read_tasks(args.tasks)
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit_nodes:
        nodes = nodes[: args.limit_nodes]
    if args.limit_tasks:
        tasks = sorted(tasks, key=lambda t: (t.creation or 0, t.number))[: args.limit_tasks]
    the_plan = plan(nodes, tasks, load_mapping(args.mapping))
    if args.saturation:
        the_plan = all_at_once(the_plan)
        args.fail_nodes = 0
    work = args.work or Path(tempfile.mkdtemp(prefix="fleet-"))
    for name in args.runs.split(","):
        # A run's folder holds its cluster's etcd: started again, it would bring back the earlier
        # run's nodes (a failed one still labelled not-ready) and pods.
        if (work / name.strip()).exists():
            print(
                f"error: --work {work}: {name.strip()}/ holds an earlier run; give an empty folder",
                file=sys.stderr,
            )
            return 2
    runs = []
    started = time.monotonic()
    for name in args.runs.split(","):
        runs.append(one_run(args, the_plan, work, with_pdp=name.strip() == "pdp"))
    span = the_plan.span
    sources = {"nodes": args.nodes.name, "tasks": args.tasks.name, "mapping": str(args.mapping.name)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    compress = span / args.seconds
    png = timelines([r.result for r in runs], compress, args.out.with_name(f"{args.out.stem}-timelines.png"))
    args.out.write_text(
        render(
            the_plan,
            sources,
            args.seconds,
            compress,
            runs,
            plots=[png.name],
            command=_command(argv),
            saturation=args.saturation,
        )
    )
    figures: dict[str, object] = {"violations": {}, "wall_seconds": time.monotonic() - started}
    for r in runs:
        name = "pdp" if r.result.with_pdp else "plain"
        figures["violations"][name] = {c: violations_by_check(r.result)[c] for c in CHECKS}  # type: ignore[index]
        replaced = [v for v in r.result.views.values() if v.replaces]
        figures[name] = {
            "placed": sum(1 for v in r.result.views.values() if v.bound is not None),
            "refused": sum(r.result.refused.values()),
            "evicted": len(r.result.evicted),
            "replaced_placed": sum(1 for v in replaced if v.bound is not None),
            "submit_errors": len(r.result.submit_errors),
        }
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2))
    print(f"report: {args.out} (work: {work})", file=sys.stderr)
    pdp = [r for r in runs if r.result.with_pdp]
    return 1 if pdp and any(violations_by_check(pdp[0].result).values()) else 0


if __name__ == "__main__":
    sys.exit(main())
