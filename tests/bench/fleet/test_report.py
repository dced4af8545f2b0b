"""The report's saturation figures: pods bound per second from the pods' own times."""

from __future__ import annotations

from bench.fleet.promises import PodView
from bench.fleet.replay import RunResult
from bench.fleet.report import RunFigures, binding_rate, counts, preemption_line, saturation_lines


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


def test_the_preemptions_the_pdp_was_asked_about_are_counted_by_outcome() -> None:
    scrape = "\n".join(
        [
            "# TYPE gpupaas_pdp_extender_requests counter",
            'gpupaas_pdp_extender_requests_total{verb="preempt",outcome="filtered"} 3.0',
            'gpupaas_pdp_extender_requests_total{verb="preempt",outcome="all_eligible"} 2.0',
            'gpupaas_pdp_extender_requests_total{verb="filter",outcome="filtered"} 40.0',
        ]
    )
    by_outcome = counts(scrape, "gpupaas_pdp_extender_requests_total", {"verb": "preempt"}, "outcome")
    assert by_outcome == {"filtered": 3.0, "all_eligible": 2.0}
    assert preemption_line(by_outcome) == (
        "- preemption: kube-scheduler asked the extender 5 times before evicting: every candidate node "
        "kept 2, some refused 3 (victims left in place there), malformed 0"
    )
    assert "no preemption" in preemption_line({})
