"""The web console: server-rendered pages for tenants and platform admins, served by the
lifecycle worker under /console (pdp/product/console/app.py)."""

from pdp.product.console.app import create
from pdp.product.console.session import PREFIX

__all__ = ["PREFIX", "create"]
