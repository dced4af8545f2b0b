"""The report's saturation figures: pods bound per second from the pods' own times."""

from __future__ import annotations

from bench.fleet.promises import PodView
from bench.fleet.replay import RunResult
from bench.fleet.report import RunFigures, binding_rate, saturation_lines


def _run(
    with_pdp: bool, bound_at: list[float | None], scheduler_started: float | None = None, refused: int = 0
) -> RunFigures:
    result = RunResult(with_pdp=with_pdp, scheduler_started=scheduler_started)
    for i, bound in enumerate(bound_at):
        result.views[f"ns/p{i}"] = PodView(f"p{i}", "ns", created=1.0 + i * 0.01, bound=bound)
    result.answered, result.last_answer = len(bound_at) + refused, 1.5
    return RunFigures(result, {})


def test_the_binding_rate_counts_bound_pods_from_the_first_submission_to_the_last_binding() -> None:
    assert binding_rate(_run(True, [3.0, None, 11.0]).result) == (2, 10.0)
    assert binding_rate(_run(True, [None, None]).result) == (0, 0.0)


def test_a_held_scheduler_is_timed_from_its_first_binding_to_its_last() -> None:
    # Started at 2 s: the pods waiting since 1 s are not its time, nor its start-up before 3 s.
    assert binding_rate(_run(True, [3.0, None, 7.0, 5.0], scheduler_started=2.0).result) == (3, 4.0)
    assert binding_rate(_run(True, [None], scheduler_started=2.0).result) == (0, 0.0)


def test_the_saturation_table_compares_both_phases_with_the_scheduler_alone() -> None:
    # With the PDP: 3 pods and 3 refusals answered in 0.5 s, 2 bound in 4 s; alone: 3 answered
    # in 0.5 s, 3 bound in 3 s.
    pdp = _run(True, [2.0, 6.0, None], scheduler_started=1.8, refused=3)
    alone = _run(False, [2.0, 3.0, 5.0], scheduler_started=1.8)
    lines = saturation_lines([pdp, alone])
    rows = [line for line in lines if line.startswith("| with") or line.startswith("| scheduler")]
    assert rows == [
        "| with the PDP | 6 | 0.5 | 12.0 | 2.00x | 2 | 4.0 | 0.5 | 0.50x |",
        "| scheduler alone | 3 | 0.5 | 6.0 | 1.00x | 3 | 3.0 | 1.0 | 1.00x |",
    ]
