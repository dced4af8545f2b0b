"""The waste page: its routes (views.py)."""

from pdp.product.console.pages.waste.views import router

__all__ = ["router"]
