"""The chart drawing on its own: each polyline's points are the given values scaled into the plot
area, the table holds the same numbers, and labels are escaped."""

from __future__ import annotations

import re

from pdp.product.console.charts import Line, Point, chart
from pdp.product.console.charts.svg import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, position, scale


def _polylines(svg: str) -> dict[str, list[tuple[float, float]]]:
    found = re.findall(r'<polyline class="series" data-label="([^"]*)" points="([^"]*)"', svg)
    return {
        label: [(float(x), float(y)) for x, y in (p.split(",") for p in pts.split())] for label, pts in found
    }


def test_points_are_the_values_scaled_into_the_plot_area() -> None:
    a = Line("a", (Point(1000, 0), Point(1060, 5), Point(1120, 10)))
    b = Line("b", (Point(1000, 2), Point(1120, 4)))
    drawn = _polylines(chart("GPUs", "GPUs", [b, a]).svg)
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    # x: first time at the left edge, last at the right; y: 0 at the bottom, the highest value at the top.
    assert drawn["a"] == [(left, bottom), ((left + right) / 2, (top + bottom) / 2), (right, top)]
    assert drawn["b"][0] == (left, round(bottom - 0.2 * (bottom - top), 2))
    assert drawn["b"][1] == (right, round(bottom - 0.4 * (bottom - top), 2))


def test_the_table_holds_the_same_numbers() -> None:
    a = Line("a", (Point(1000, 1.5), Point(1060, 2.5)))
    b = Line("b", (Point(1060, 7),))
    c = chart("t", "u", [a, b])
    assert c.labels == ("a", "b") and c.times == (1000, 1060)
    assert c.rows == ((1.5, None), (2.5, 7))
    ranges = scale((a, b))
    for line, (label, points) in zip((a, b), _polylines(c.svg).items(), strict=True):
        assert label == line.label and points == [position(p, ranges) for p in line.points]


def test_labels_and_titles_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    svg = chart(evil, "&", [Line(evil, (Point(0, 1),))]).svg
    assert (
        "<script>" not in svg
        and "&lt;script&gt;" in svg
        and 'data-label="&lt;script&gt;alert(&quot;x&quot;)' in svg
    )


def test_no_data_draws_an_empty_plot() -> None:
    c = chart("nothing", "GPUs", [])
    assert c.rows == () and c.labels == () and "<polyline" not in c.svg and c.svg.startswith("<svg")
