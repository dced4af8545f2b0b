"""The usage page: its routes (views.py) and the charts they
draw (charts.py: the PromQL and its lines)."""

from pdp.product.console.pages.usage.views import router

__all__ = ["router"]
