"""The operator's pages of issue 30 — waste, enforcement, SLAs, incidents — for the admin and for
a tenant, and drift, each in the navigation; a tenant kept to its own; a worker without Prometheus says so."""

from __future__ import annotations

import re

import pytest

from tests.product.console.conftest import Fleet
from tests.product.console.web import Session

PAGES = ("waste", "enforcement", "sla", "incidents", "drift")


def _login(fleet: Fleet, account: str) -> Session:
    s = Session(fleet.worker)
    token = fleet.worker.admin_token if account == "admin" else fleet.tokens[account]
    assert s.login(account, token).status_code == 303
    return s


@pytest.fixture(scope="module")
def denied(fleet: Fleet) -> Fleet:
    """acme-ui refused once (a US cluster for an EU-only tenant): RESIDENCY_VIOLATION."""
    s = _login(fleet, "acme-ui")
    s.get("/console/tenants/acme-ui/deploy")
    form = {"deployment": "us-try", "gpu_class": "H100-80GB", "gpus_per_replica": "1",
            "replicas": "1", "cluster": "us-east", "action": "submit"}  # fmt: skip
    assert "RESIDENCY_VIOLATION" in s.post("/console/tenants/acme-ui/deploy", form).text
    s.close()
    return fleet


def test_the_admin_pages_are_in_the_navigation_and_render(denied: Fleet) -> None:
    s = _login(denied, "admin")
    nav = s.get("/console/admin/tenants").text
    for name in PAGES:
        assert f'href="/console/admin/{name}"' in nav
        r = s.get(f"/console/admin/{name}")
        assert r.status_code == 200, (name, r.text)
    enforcement = s.get("/console/admin/enforcement").text
    row = re.search(r'id="by-reason".*?RESIDENCY_VIOLATION</th><td class="num">(\d+)', enforcement, re.S)
    assert row and int(row.group(1)) >= 1, enforcement
    assert 'id="denials-per-hour"' in enforcement and "<svg" in enforcement
    # This worker reads no Prometheus: the charts and the SLA say so, the pages still render.
    assert "the worker reads no Prometheus" in s.get("/console/admin/waste").text
    assert "No SLA measurement" in s.get("/console/admin/sla").text
    assert "No incident has been reported" in s.get("/console/admin/incidents").text
    assert "No drift audit has run yet" in s.get("/console/admin/drift").text
    assert s.get("/console/tenants/acme-ui/drift").status_code == 200
    rollouts = s.get("/console/admin/rollouts")
    assert rollouts.status_code == 200 and 'href="/console/admin/rollouts"' in nav
    assert "The policy decided with now" in rollouts.text and "Revision" in rollouts.text
    # An admin may look at one tenant's pages too.
    assert s.get("/console/tenants/globex-ui/enforcement").status_code == 200
    s.close()


def test_a_tenant_sees_its_own_pages_only(denied: Fleet) -> None:
    s = _login(denied, "acme-ui")
    nav = s.get("/console/tenants/acme-ui").text
    for name in PAGES:
        assert f'href="/console/tenants/acme-ui/{name}"' in nav
        assert s.get(f"/console/tenants/acme-ui/{name}").status_code == 200, name
        assert s.get(f"/console/tenants/globex-ui/{name}").status_code in (403, 404), name
        assert s.get(f"/console/admin/{name}").status_code == 403, name
    assert s.get("/console/admin/rollouts").status_code == 403
    assert "RESIDENCY_VIOLATION" in s.get("/console/tenants/acme-ui/enforcement").text
    s.close()
    other = _login(denied, "globex-ui")
    page = other.get("/console/tenants/globex-ui/enforcement").text
    assert "RESIDENCY_VIOLATION" not in page and "acme-ui" not in page.replace("globex-ui", "")
    other.close()
