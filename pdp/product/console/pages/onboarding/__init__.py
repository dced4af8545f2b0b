"""The admin's tenant onboarding form (`/console/admin/tenants/new`): the tenant policy as form
fields (form.py), a preview of the PDP's create_tenant decision that creates nothing, then the
API's one onboarding path, `onboard` of pdp/product/api/tenants.py (views.py)."""

from pdp.product.console.pages.onboarding.views import PATH, router

__all__ = ["PATH", "router"]
