"""The incidents page: its routes (views.py) and the timeline per node they show (timeline.py)."""

from pdp.product.console.pages.incidents.views import router

__all__ = ["router"]
