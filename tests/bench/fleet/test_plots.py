"""The replay's timelines PNG: drawn from the runs' samples, the same bytes for the same runs."""

from __future__ import annotations

from pathlib import Path

from bench.fleet.plots import timelines
from bench.fleet.replay import RunResult, Sample

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(with_pdp: bool, spot_gpus: float) -> RunResult:
    run = RunResult(with_pdp=with_pdp)
    for i in range(5):
        gpus = {"enterprise": 2.0 * i, "standard": 1.0, "spot": spot_gpus}
        run.samples.append(Sample(at=i, gpus_by_tier=gpus, pending_by_tier={"spot": 5 - i}, clock=i * 2.0))
    return run


def test_the_timelines_are_a_png_that_the_same_runs_draw_alike_and_other_runs_do_not(tmp_path: Path) -> None:
    runs = [_run(True, 1.0), _run(False, 3.0)]
    first = timelines(runs, compress=3600.0, out=tmp_path / "a.png")
    second = timelines(runs, compress=3600.0, out=tmp_path / "b.png")
    other = timelines([_run(True, 1.0), _run(False, 6.0)], compress=3600.0, out=tmp_path / "c.png")
    assert first.read_bytes().startswith(PNG_MAGIC)
    assert first.read_bytes() == second.read_bytes()
    assert other.read_bytes() != first.read_bytes()
    # A column per run, two rows: 1,200 x 650 pixels at 100 dpi (the PNG header's width and height).
    header = first.read_bytes()[16:24]
    assert (int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")) == (1200, 650)
