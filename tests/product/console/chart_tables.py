"""A chart's table as the console renders it (charts/svg.py's table beside each SVG): read back by
the tests that hold a chart to what Prometheus answers."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

ROW = re.compile(r'<tr><th scope="row">([0-9: -]+)</th>(.*?)</tr>', re.S)
CELL = re.compile(r'<td class="num">([^<]*)</td>')
HEAD = re.compile(r'<th scope="col">([^<]*)</th>')


def chart_table(page: str, figure: str) -> tuple[list[str], list[tuple[float, list[float | None]]]]:
    """The labels and rows (time, values) of the chart table in the figure `figure` of `page`."""
    part = page.split(f'id="{figure}"', 1)[1].split("</figure>", 1)[0]
    labels = [html.unescape(h) for h in HEAD.findall(part)[1:]]
    rows = []
    for when, cells in ROW.findall(part):
        at = datetime.strptime(when, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        rows.append((at, [None if c == "\u2013" else float(c.replace(",", "")) for c in CELL.findall(cells)]))
    return labels, rows
