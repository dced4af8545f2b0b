"""Series as an SVG line chart and as a table of the same numbers. Pure: data in, markup out.

Every label, legend and title is XML-escaped; the SVG carries no script and no link, so the
console's Content-Security-Policy ("default-src 'none'") shows it inline. Points are scaled into
a fixed plot area: x from the first to the last timestamp, y from 0 (or the lowest value, when
negative) to the highest value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28  # the plot area's margins inside the SVG
COLOURS = ("#1f5fa8", "#b34700", "#2a7a2a", "#7a2a7a", "#5a5a5a", "#a8001f")


@dataclass(frozen=True)
class Point:
    at: float  # seconds since the epoch
    value: float


@dataclass(frozen=True)
class Line:
    label: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Chart:
    """A drawn chart: `svg` (markup, escaped), the `times` of the table's rows and per line its
    values at those times (None where the line has no point)."""

    title: str
    unit: str
    svg: str
    times: tuple[float, ...]
    labels: tuple[str, ...]
    rows: tuple[tuple[float | None, ...], ...]  # one row per time, one value per line


def _fmt(value: float) -> str:
    return f"{value:,.4g}"


def time_text(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def scale(lines: tuple[Line, ...]) -> tuple[float, float, float, float]:
    """The ranges the plot area spans: first and last time, lowest and highest value."""
    points = [p for line in lines for p in line.points if math.isfinite(p.value)]
    if not points:
        return 0.0, 1.0, 0.0, 1.0
    t0, t1 = min(p.at for p in points), max(p.at for p in points)
    v0, v1 = min(0.0, min(p.value for p in points)), max(p.value for p in points)
    return t0, (t1 if t1 > t0 else t0 + 1), v0, (v1 if v1 > v0 else v0 + 1)


def position(point: Point, ranges: tuple[float, float, float, float]) -> tuple[float, float]:
    """Where `point` is drawn: its x and y in the SVG's coordinates (y grows downwards)."""
    t0, t1, v0, v1 = ranges
    x = LEFT + (point.at - t0) / (t1 - t0) * (WIDTH - LEFT - RIGHT)
    y = TOP + (1 - (point.value - v0) / (v1 - v0)) * (HEIGHT - TOP - BOTTOM)
    return round(x, 2), round(y, 2)


def chart(title: str, unit: str, lines: list[Line]) -> Chart:
    """`lines` drawn as one SVG, with its table (a row per timestamp of any line)."""
    ordered = tuple(sorted(lines, key=lambda line: line.label))
    ranges = scale(ordered)
    t0, t1, v0, v1 = ranges
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(title)} ({escape(unit)}); the numbers are '
        f'in the table below" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
        'fill="none" stroke="#888"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" font-size="11">{escape(_fmt(v1))}</text>',
        f'<text x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" text-anchor="end" font-size="11">'
        f"{escape(_fmt(v0))}</text>",
        f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11">{escape(time_text(t0))}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" font-size="11">'
        f"{escape(time_text(t1))}</text>",
    ]
    for i, line in enumerate(ordered):
        colour = COLOURS[i % len(COLOURS)]
        xy = [position(p, ranges) for p in line.points if math.isfinite(p.value)]
        coords = " ".join(f"{x},{y}" for x, y in xy)
        parts.append(
            f'<polyline class="series" data-label="{escape(line.label)}" points="{coords}" '
            f'fill="none" stroke="{colour}" stroke-width="2"><title>{escape(line.label)}</title></polyline>'
        )
    for i, line in enumerate(ordered[:8]):  # the legend, top right inside the plot (the table has all)
        colour = COLOURS[i % len(COLOURS)]
        y = TOP + 14 + 14 * i
        parts.append(
            f'<text class="legend" x="{WIDTH - RIGHT - 6}" y="{y}" text-anchor="end" font-size="11" '
            f'fill="{colour}">{escape(line.label)}</text>'
        )
    parts.append("</svg>")
    times = tuple(sorted({p.at for line in ordered for p in line.points}))
    by_line = [{p.at: p.value for p in line.points} for line in ordered]
    rows = tuple(tuple(values.get(t) for values in by_line) for t in times)
    return Chart(title, unit, "".join(parts), times, tuple(line.label for line in ordered), rows)
