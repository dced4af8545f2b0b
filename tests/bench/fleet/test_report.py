"""The report's saturation figures: pods bound per second from the pods' own times."""

from __future__ import annotations

from bench.fleet.promises import PodView
from bench.fleet.replay import RunResult
from bench.fleet.report import RunFigures, binding_rate, saturation_lines


def _run(with_pdp: bool, bound_at: list[float | None]) -> RunFigures:
    result = RunResult(with_pdp=with_pdp)
    for i, bound in enumerate(bound_at):
        result.views[f"ns/p{i}"] = PodView(f"p{i}", "ns", created=1.0 + i * 0.01, bound=bound)
    return RunFigures(result, {})


def test_the_binding_rate_counts_bound_pods_from_the_first_submission_to_the_last_binding() -> None:
    assert binding_rate(_run(True, [3.0, None, 11.0]).result) == (2, 10.0)
    assert binding_rate(_run(True, [None, None]).result) == (0, 0.0)


def test_the_saturation_table_compares_the_policy_run_with_the_scheduler_alone() -> None:
    lines = saturation_lines([_run(True, [2.0, 6.0, None]), _run(False, [2.0, 3.0, 5.0])])
    rows = [line for line in lines if line.startswith("| with") or line.startswith("| scheduler")]
    # With the PDP: 2 pods in 5 s (0.4/s); alone: 3 in 4 s (0.75/s): 0.53x.
    assert rows == [
        "| with the PDP | 2 | 5.0 | 0.4 | 0.53x |",
        "| scheduler alone | 3 | 4.0 | 0.8 | 1.00x |",
    ]
