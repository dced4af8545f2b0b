"""The web console: server-rendered pages for tenants and platform admins, served by the
lifecycle worker under /console (pdp/console/app.py)."""

from pdp.console.app import create
from pdp.console.session import PREFIX

__all__ = ["PREFIX", "create"]
