"""The SLA page: its routes (views.py) and the charts they
draw (charts.py: the PromQL and its lines)."""

from pdp.product.console.pages.sla.views import router

__all__ = ["router"]
