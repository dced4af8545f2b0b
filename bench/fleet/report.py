"""The replay's report: figures per tier, the promise checks of both runs side by side, the PDP's
latencies from its Prometheus metrics and what each component cost (pure but for reading /proc)."""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.fleet.mapping import Plan
from bench.fleet.promises import CHECKS
from bench.fleet.replay import MAX_STALL_SECONDS, RunResult

TIERS = ("enterprise", "standard", "spot")


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


# -- Prometheus histograms --------------------------------------------------------------------------
Buckets = dict[float, float]  # upper bound -> cumulative count


def histogram(metrics: str, name: str, labels: Mapping[str, str]) -> Buckets:
    """The cumulative buckets of every series of `name` whose labels include `labels`, summed, in
    the text of a /metrics scrape."""
    out: dict[float, float] = defaultdict(float)
    for metric in text_string_to_metric_families(metrics):
        for s in metric.samples:
            if s.name == f"{name}_bucket" and all(s.labels.get(k) == v for k, v in labels.items()):
                out[float(s.labels["le"])] += s.value
    return dict(out)


def total(metrics: str, name: str) -> float:
    """The sum of every series of the counter `name` (its `_total` samples) in a /metrics scrape."""
    return sum(
        s.value
        for metric in text_string_to_metric_families(metrics)
        for s in metric.samples
        if s.name == name
    )


def counts(metrics: str, name: str, labels: Mapping[str, str], by: str) -> dict[str, float]:
    """The counter `name` (its `_total` samples) whose labels include `labels`, summed per value
    of the label `by`, in the text of a /metrics scrape."""
    out: dict[str, float] = defaultdict(float)
    for metric in text_string_to_metric_families(metrics):
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out[s.labels.get(by, "")] += s.value
    return dict(out)


def quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket the rank falls in."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if math.isinf(le):
                return lower
            width = buckets[le] - below
            return lower + (le - lower) * ((rank - below) / width if width else 1.0)
        lower, below = le, buckets[le]
    return lower


# -- processes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_mib: float
    nice: int = 0


def usage(pid: int) -> Usage | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return Usage(cpu, hwm / 1024, int(stat[16]))


def preemption_line(by_outcome: Mapping[str, float]) -> str:
    """What kube-scheduler's preemptions asked the PDP (the extender's preempt verb)."""
    asked = sum(by_outcome.values())
    if not asked:
        return "- preemption: kube-scheduler asked the extender about no preemption"
    return (
        f"- preemption: kube-scheduler asked the extender {asked:,.0f} times before evicting: every "
        f"candidate node kept {by_outcome.get('all_eligible', 0):,.0f}, some refused "
        f"{by_outcome.get('filtered', 0):,.0f} (victims left in place there), malformed "
        f"{by_outcome.get('error', 0):,.0f}"
    )


# -- the report ---------------------------------------------------------------------------------------
@dataclass
class RunFigures:
    result: RunResult
    usage: dict[str, Usage]
    decisions: float = 0.0
    webhook: Buckets | None = None
    webhook_decisions: Buckets | None = None  # the policy's part of each review
    extender: Buckets | None = None
    preempt: dict[str, float] | None = None  # the extender's preempt calls by outcome


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def tier_rows(plan: Plan, result: RunResult) -> dict[str, dict[str, str]]:
    tier_of_ns = {t.namespace: t.tier for t in plan.tenants.values()}
    submitted = Counter(a.tenant.tier for a in plan.arrivals)
    pending: dict[str, list[float]] = defaultdict(list)
    never: Counter[str] = Counter()  # still pending at the end
    gone: Counter[str] = Counter()  # deleted at its trace deletion time before it was placed
    for view in result.views.values():
        tier = tier_of_ns[view.namespace]
        if view.bound is not None:
            pending[tier].append(view.bound - view.created)
        elif view.ended is None:
            never[tier] += 1
        else:
            gone[tier] += 1
    peak: dict[str, float] = defaultdict(float)
    for sample in result.samples:
        for tier, gpus in sample.gpus_by_tier.items():
            peak[tier] = max(peak[tier], gpus)
    return {
        tier: {
            "tasks": str(submitted[tier]),
            "refused": str(result.refused_by_tier[tier]),
            "placed": str(len(pending[tier])),
            "pending at the end": str(never[tier]),
            "ended unplaced": str(gone[tier]),
            "pending p50 s": _s(percentile(pending[tier], 50)),
            "pending p99 s": _s(percentile(pending[tier], 99)),
            "peak GPUs": f"{peak[tier]:.1f}",
        }
        for tier in TIERS
    }


def violations_by_check(result: RunResult) -> Counter[str]:
    return Counter(v.check for v in result.violations.values())


def submission_rate(result: RunResult) -> tuple[int, float]:
    """Pod creations the API server answered (admitted or refused), and the seconds from the
    first submission to the last answer."""
    first = min((v.created for v in result.views.values()), default=0.0)
    return result.answered, max(result.last_answer - first, 0.0)


def binding_rate(result: RunResult) -> tuple[int, float]:
    """Pods bound, and the seconds they took: from the scheduler's first binding to its last when
    it was held until every creation was answered (the saturation run: it then always had pods
    waiting), else from the first submission to the last binding."""
    bound = sorted(v.bound for v in result.views.values() if v.bound is not None)
    if result.scheduler_started is not None:
        return len(bound), (bound[-1] - bound[0]) if bound else 0.0
    first = min((v.created for v in result.views.values()), default=0.0)
    return len(bound), max(bound, default=first) - first


def _per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def saturation_lines(runs: Sequence[RunFigures]) -> list[str]:
    """The saturation table: creations answered and pods bound per second in each run, each
    against the scheduler alone."""
    submitted = {r.result.with_pdp: submission_rate(r.result) for r in runs}
    bound = {r.result.with_pdp: binding_rate(r.result) for r in runs}

    def ratio(rates: dict[bool, tuple[int, float]], run: RunFigures) -> str:
        alone = _per_second(*rates[False]) if False in rates else 0.0
        return f"{_per_second(*rates[run.result.with_pdp]) / alone:.2f}x" if alone else ""

    lines = [
        "## Saturation: pods bound per second",
        "",
        "Every task submitted at once, none deleted, in two phases: the pods are created while "
        "kube-scheduler is held (the API server, the quotas and, in the policy run, the PDP's "
        "webhook answer them), then the scheduler starts and meets them all, so that from its "
        "first binding to its last it always has pods waiting: its throughput, with the PDP's "
        "extender in its path or alone, is the bound/s below. (In one phase the submissions set "
        "the pace of both runs, and a run whose policy refuses half the pods looked half as fast.)",
        "",
        "| run | creations answered | s | answered/s | vs scheduler alone "
        "| pods bound | s, first binding to last | bound/s | vs scheduler alone |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        answered, answer_s = submitted[run.result.with_pdp]
        placed, bind_s = bound[run.result.with_pdp]
        lines.append(
            f"| {_run_name(run)} | {answered:,} | {answer_s:.1f} | {_per_second(answered, answer_s):.1f} "
            f"| {ratio(submitted, run)} | {placed:,} | {bind_s:.1f} | {_per_second(placed, bind_s):.1f} "
            f"| {ratio(bound, run)} |"
        )
    return [*lines, ""]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def render(
    plan: Plan,
    sources: Mapping[str, str],
    seconds: float,
    compress: float,
    runs: Sequence[RunFigures],
    plots: Iterable[str] = (),
    command: str = "",
    saturation: bool = False,
) -> str:
    gpus = sum(p.node.gpus for p in plan.nodes)
    lines = [
        "# Fleet simulation: the Alibaba GPU trace replayed through the control plane",
        "",
        "A real production GPU cluster's nodes and tasks, mapped to tenants by the rules of one file, "
        "replayed through etcd, kube-apiserver, kube-scheduler, kube-controller-manager and KWOK (nodes "
        "that heartbeat, pods that run, nodes that fail), once with the PDP in the path (the tenants "
        "onboarded through the product API, whose lifecycle workflows applied their namespaces, quotas, "
        "priority classes and queues; webhook, scheduler extender; spot Jobs through Kueue with the PDP's "
        "admission check) and once with the scheduler alone. "
        "This page is the report of:",
        "",
        "```bash",
        command or "python -m bench.fleet",
        "```",
        "",
        'Data: Alibaba GPU cluster trace v2023, released with Weng et al., "Beware of Fragmentation: '
        "Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent\", USENIX ATC '23 "
        "(github.com/alibaba/clusterdata, cluster-trace-gpu-v2023).",
        "",
        f"Replayed: {len(plan.nodes):,} nodes ({gpus:,} GPUs) from `{sources['nodes']}`, "
        f"{len(plan.arrivals):,} tasks from `{sources['tasks']}`, mapped by `{sources['mapping']}`; "
        + (
            "every task submitted at once and never deleted (a saturation run)."
            if saturation
            else f"trace time compressed {compress:,.0f}-fold into {seconds:.0f} s of replay clock, which "
            "stops while the cluster has pods neither placed nor found unschedulable (at most "
            f"{MAX_STALL_SECONDS:.0f} s at a time), so the pods running at any moment are the trace's."
        ),
        "",
        "## Promises (each must be 0; checked on the API server's state, not on the PDP's log)",
        "",
        "| check | " + " | ".join(_run_name(r) for r in runs) + " |",
        "| --- | " + " | ".join("---:" for _ in runs) + " |",
    ]
    counts = [violations_by_check(r.result) for r in runs]
    for name in CHECKS:
        lines.append(f"| {name} | " + " | ".join(str(c[name]) for c in counts) + " |")
    for run in runs:
        found = sorted(run.result.violations.values(), key=lambda v: (v.check, v.pod))
        if found:
            lines += ["", f"Violations ({_run_name(run)}, the first 20):", ""]
            lines += [f"- {v.check}: {v.pod}: {v.detail}" for v in found[:20]]
    lines.append("")
    if saturation:
        lines += saturation_lines(runs)
    lines += ["## Per tier", ""]
    for run in runs:
        rows = tier_rows(plan, run.result)
        cols = list(next(iter(rows.values())))
        r = run.result
        lines += [
            f"**{_run_name(run)}**: wall {r.wall_seconds:.0f} s, of which the replay clock waited "
            f"{r.stalled_seconds:.0f} s for the cluster to settle and went on unsettled for "
            f"{r.forced_seconds:.0f} s",
            "",
        ]
        lines += ["| tier | " + " | ".join(cols) + " |", "| --- | " + " | ".join("---:" for _ in cols) + " |"]
        lines += [f"| {tier} | " + " | ".join(row[c] for c in cols) + " |" for tier, row in rows.items()]
        lines.append("")
    for run in runs:
        unplaced = Counter(
            v.unschedulable_why or "never tried"
            for v in run.result.views.values()
            if v.bound is None and v.ended is not None
        )
        if unplaced:
            lines += [
                f"Ended unplaced, by the reason the scheduler last gave for most nodes ({_run_name(run)}):",
                "",
            ]
            lines += [f"- {reason}: {n}" for reason, n in unplaced.most_common(8)]
            lines.append("")
    for run in runs:
        if run.result.refused:
            lines += [f"Refused by reason ({_run_name(run)}):", ""]
            lines += [f"- {reason}: {n}" for reason, n in run.result.refused.most_common()]
            lines.append("")
    lines += ["## Node failures", ""]
    for run in runs:
        r = run.result
        replaced = [v for v in r.views.values() if v.replaces]
        bound = [v for v in replaced if v.bound is not None]
        lines.append(
            f"- {_run_name(run)}: {_count(len(r.failed_nodes), 'node')} failed (Ready False), "
            f"{_count(len(r.evicted), 'pod')} evicted by taint eviction, {len(replaced)} re-created, "
            f"{len(bound)} of them placed again."
        )
    lines += ["", "## The PDP in the path", ""]
    for run in runs:
        if run.webhook is None:
            continue
        lines += [
            f"- decisions: {run.decisions:,.0f} ({run.decisions / max(run.result.wall_seconds, 1e-9):.1f}/s)",
            f"- webhook p50 {_ms(quantile(0.5, run.webhook))} ms, p99 {_ms(quantile(0.99, run.webhook))} ms "
            f"(its decisions alone: p50 {_ms(quantile(0.5, run.webhook_decisions or {}))} ms, "
            f"p99 {_ms(quantile(0.99, run.webhook_decisions or {}))} ms)",
            f"- extender filter p50 {_ms(quantile(0.5, run.extender or {}))} ms, "
            f"p99 {_ms(quantile(0.99, run.extender or {}))} ms",
            preemption_line(run.preempt or {}),
        ]
        # The Jobs as submitted (a view of a replacement pod is named after the pod itself).
        queued = [v for v in run.result.views.values() if v.job and v.pod != f"{v.namespace}/{v.name}"]
        if queued:
            placed = sum(1 for v in queued if v.bound is not None)
            lines.append(
                f"- Kueue: {len(queued):,} spot tasks submitted as Jobs to their tenants' LocalQueues "
                f"(those holding whole GPUs or none, bench/fleet/jobs.py); {placed:,} of them placed, "
                "each admitted only once the PDP's admission check said Ready"
            )
    lines += [
        "",
        "## What each component cost",
        "",
        "| run | component | CPU s | peak RSS MiB | nice |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for run in runs:
        for name, u in sorted(run.usage.items()):
            lines.append(
                f"| {_run_name(run)} | {name} | {u.cpu_seconds:.1f} | {u.peak_rss_mib:.0f} | {u.nice} |"
            )
    if any(r.result.submit_errors for r in runs):
        lines += ["", "## Submission errors (not refusals)", ""]
        for run in runs:
            lines += [f"- {_run_name(run)}: {e}" for e in run.result.submit_errors[:20]]
    for plot in plots:
        lines += ["", f"![{Path(plot).stem}]({plot})"]
    return "\n".join(lines) + "\n"


def _run_name(run: RunFigures) -> str:
    return "with the PDP" if run.result.with_pdp else "scheduler alone"
