"""Time-series charts drawn on the server: `svg` turns series into an SVG string and the table of
the same numbers (pure), `source` asks Prometheus's `/api/v1/query_range` for them (I/O)."""

from __future__ import annotations

from pdp.product.console.charts.svg import Chart, Line, Point, chart

__all__ = ["Chart", "Line", "Point", "chart"]
