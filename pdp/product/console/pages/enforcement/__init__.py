"""The enforcement page: its routes (views.py) and the charts they
draw (charts.py: the PromQL and its lines)."""

from pdp.product.console.pages.enforcement.views import router

__all__ = ["router"]
