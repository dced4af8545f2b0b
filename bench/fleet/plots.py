"""The replay's timelines as a PNG beside the report: per tier, the GPUs allocated and the pods
pending, over trace time, the policy run and the scheduler-alone run side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# Figure without pyplot: no global state, no display backend chosen; savefig draws with Agg.
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bench.fleet.replay import RunResult

TIERS = ("enterprise", "standard", "spot")
COLORS = {"enterprise": "#1f5fa8", "standard": "#3d9a50", "spot": "#d08a1e"}


def timelines(runs: Sequence[RunResult], compress: float, out: Path) -> Path:
    """Write the runs' timelines to `out` (PNG): a column per run, GPUs allocated above, pods
    pending below, one line per tier; the x axis is trace time in hours."""
    figure = Figure(figsize=(6 * len(runs), 6.5), layout="tight")
    axes = figure.subplots(2, len(runs), sharex=True, squeeze=False)
    top = max((max(s.gpus_by_tier.values(), default=0.0) for r in runs for s in r.samples), default=0.0)
    pending = max((max(s.pending_by_tier.values(), default=0) for r in runs for s in r.samples), default=0)
    for column, run in enumerate(runs):
        hours = [s.clock * compress / 3600 for s in run.samples]
        gpus_axis, pending_axis = axes[0][column], axes[1][column]
        for tier in TIERS:
            color = COLORS[tier]
            gpus_axis.step(hours, [s.gpus_by_tier.get(tier, 0.0) for s in run.samples], where="post",
                           label=tier, color=color)  # fmt: skip
            pending_axis.step(hours, [s.pending_by_tier.get(tier, 0) for s in run.samples], where="post",
                              label=tier, color=color)  # fmt: skip
        gpus_axis.set_title("with the PDP" if run.with_pdp else "scheduler alone")
        gpus_axis.set_ylim(0, top * 1.05 or 1)
        pending_axis.set_ylim(0, pending * 1.05 or 1)
        pending_axis.yaxis.set_major_locator(MaxNLocator(integer=True))  # pods come whole
        gpus_axis.set_ylabel("GPUs allocated")
        pending_axis.set_ylabel("pods pending")
        pending_axis.set_xlabel("trace time (hours)")
        for axis in (gpus_axis, pending_axis):
            axis.grid(alpha=0.3)
            axis.legend(loc="upper right", fontsize="small")
    out.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp in the file: the same replay draws the same bytes.
    figure.savefig(out, dpi=100, metadata={"Software": None})
    return out
