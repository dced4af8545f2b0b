"""Pages: Jinja2 templates with autoescape on, each page with a fresh CSRF nonce for its forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.product.console import fields, session
from pdp.product.console.charts import Chart
from pdp.product.console.charts.svg import time_text

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # every value is escaped; nothing in a page is marked safe
)
_env.globals["fields"] = fields.tree
_env.globals["label"] = fields.label


def _svg(chart: Chart) -> Markup:
    # The one markup not escaped by the template: pdp/product/console/charts/svg.py escapes every
    # label and title it draws, and the SVG has no script or link.
    return Markup(chart.svg)


_env.globals["svg"] = _svg
_env.globals["time_text"] = time_text
_env.globals["number"] = lambda v: f"{v:,.4g}"
templates = Jinja2Templates(env=_env)


def page(
    request: Request,
    name: str,
    who: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    nonce = session.new_nonce()
    values = {"who": who, "csrf": nonce, "prefix": session.PREFIX, "title": "", **context}
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    # The console's pages load nothing from elsewhere and run no script.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    session.issue_csrf(request, response, nonce)
    return response
