"""The admin's onboarding form (`/console/admin/tenants/new`) against a worker, through httpx as a
browser without JavaScript: the preview shows the PDP's decision and creates nothing; submitting
onboards the tenant through the API's one path (it exists in the store, its one-time token works);
a taken name is refused with the 409's reason; bad input names the field and keeps what was typed;
a tenant's session and a POST without the CSRF field are refused."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest

from tests.product.console.conftest import Fleet
from tests.product.console.web import Session

PAGE = "/console/admin/tenants/new"


def _form(name: str, **changes: str) -> dict[str, str]:
    """A valid new tenant: standard, shared, EU-only, 2 H100 (the PDP allows it)."""
    return {
        "name": name, "display_name": f"{name} Ltd", "tier": "standard", "isolation": "shared",
        "data_residency": "eu-only", "allow_preemption": "no", "allow_gpu_sharing": "no",
        "namespaces": f"{name}-prod, {name}-dev", "entitlement_H100-80GB": "2", "sla_class": "throughput",
        "sla_latency_p99_ms": "", "sla_availability": "99.5", "sla_max_batch_size": "",
        "action": "preview", **changes,
    }  # fmt: skip


@pytest.fixture
def admin(fleet: Fleet) -> Iterator[Session]:
    s = Session(fleet.worker)
    assert s.login("admin", fleet.worker.admin_token).status_code == 303
    yield s
    s.close()


def _status(fleet: Fleet, name: str) -> int:
    with fleet.worker.client() as c:  # the admin's API
        return c.get(f"/v1/tenants/{name}").status_code


def _text(page: str) -> str:
    """The page's words, one space between them (tags removed, entities unescaped)."""
    return " ".join(html.unescape(re.sub(r"<[^>]*>", " ", page)).split())


def test_the_form_is_in_the_admin_navigation_as_fields(admin: Session) -> None:
    page = admin.get("/console/admin/tenants")
    assert f'href="{PAGE}"' in page.text
    r = admin.get(PAGE)
    assert r.status_code == 200, r.text
    for control in ("name", "tier", "isolation", "data_residency", "namespaces", "allow_preemption",
                    "allow_gpu_sharing", "sla_class", "entitlement_H100-80GB", "entitlement_A100-40GB",
                    "entitlement_MI300X"):  # fmt: skip
        assert f'id="{control}"' in r.text and f'<label for="{control}"' in r.text, control
    assert "<textarea" not in r.text  # form fields, not a document to paste
    # The residencies the fleet can satisfy, each with its regions.
    assert '<option value="eu-only"' in r.text and "eu-only (eu-central-1, eu-west-1)" in r.text
    assert 'value="submit"' not in r.text  # nothing to submit before a preview


def test_preview_shows_the_decision_and_creates_nothing_then_submit_onboards(
    fleet: Fleet, admin: Session
) -> None:
    admin.get(PAGE)
    r = admin.post(PAGE, _form("newco"))
    assert r.status_code == 200, r.text
    assert "Preview (nothing created yet): ALLOW" in _text(r.text), r.text
    assert "Decision id" in r.text and "Bundle revision" in r.text and 'value="submit"' in r.text
    assert 'value="newco-prod, newco-dev"' in r.text  # the form keeps what was entered
    assert _status(fleet, "newco") == 404  # the preview created no tenant (and so no token)

    r = admin.post(PAGE, _form("newco", action="submit"))
    assert r.status_code == 200, r.text
    assert "Onboarded newco" in _text(r.text), r.text
    token = re.search(r'<code class="token">([^<]+)</code>', r.text)
    assert token, r.text
    workflow = re.search(r"/console/tenants/newco/requests/(onboard-newco)\"", r.text)
    assert workflow, r.text
    # The tenant is in the store, with the policy entered, and its onboarding runs to the end.
    with fleet.worker.client() as c:
        record = c.get("/v1/tenants/newco")
        assert record.status_code == 200, record.text
    policy = record.json()["policy"]
    assert policy["entitlements"] == {"H100-80GB": 2} and policy["namespaces"] == ["newco-prod", "newco-dev"]
    assert policy["data_residency"] == "eu-only" and policy["sla"] == {
        "class": "throughput",
        "availability": 99.5,
    }
    wf = fleet.worker.wait_workflow(workflow.group(1))
    assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "active", wf
    # The token shown once is the tenant's: it reads its own tenant and signs in to the console.
    with fleet.worker.client(token.group(1)) as c:
        assert c.get("/v1/tenants/newco").status_code == 200
    own = Session(fleet.worker)
    assert own.login("newco", token.group(1)).status_code == 303
    own.close()
    # Its request page (the link shown) is there for the admin.
    assert admin.get(f"/console/tenants/newco/requests/{workflow.group(1)}").status_code == 200


def test_a_taken_name_is_refused_with_the_409_reason(fleet: Fleet, admin: Session) -> None:
    with fleet.worker.client() as c:
        before = c.get("/v1/tenants/acme-ui").json()
    admin.get(PAGE)
    r = admin.post(PAGE, _form("acme-ui", tier="spot", allow_preemption="yes"))
    assert r.status_code == 409, r.text
    assert "tenant.name: tenant 'acme-ui' already exists in the lifecycle store" in _text(r.text)
    assert 'value="submit"' not in r.text
    # Submitting anyway is onboard()'s 409: nothing about the tenant changes, no token is issued.
    r = admin.post(PAGE, _form("acme-ui", tier="spot", allow_preemption="yes", action="submit"))
    assert r.status_code == 409, r.text
    assert "already exists in the lifecycle store" in _text(r.text) and 'class="token"' not in r.text
    assert 'id="name"' in r.text and 'aria-invalid="true"' in r.text  # the name control is marked
    with fleet.worker.client() as c:
        after = c.get("/v1/tenants/acme-ui").json()
    assert after["policy"] == before["policy"] and after["policy"]["tier"] == "enterprise"


def test_bad_input_names_the_field_and_keeps_what_was_entered(fleet: Fleet, admin: Session) -> None:
    admin.get(PAGE)
    bad = _form("Bad_Name", display_name="Kept <b>as typed</b>", namespaces="ok-ns, Not_OK",
                **{"entitlement_H100-80GB": "lots", "sla_availability": "101"})  # fmt: skip
    r = admin.post(PAGE, {**bad, "action": "submit"})
    assert r.status_code == 422, r.text
    text = _text(r.text)
    for named in ("tenant.name: 'Bad_Name' does not match the expected form",
                  "tenant.namespaces[1]: 'Not_OK' does not match the expected form",
                  "tenant.entitlements.H100-80GB: 'lots' is not a whole number",
                  "tenant.sla.availability: 101.0 is greater than the maximum of 100"):  # fmt: skip
        assert named in text, (named, text)
    # Every value comes back as it was typed (escaped), the selects as they were chosen.
    assert 'value="Bad_Name"' in r.text and 'value="Kept &lt;b&gt;as typed&lt;/b&gt;"' in r.text
    assert 'value="ok-ns, Not_OK"' in r.text and 'value="lots"' in r.text and 'value="101"' in r.text
    assert '<option value="eu-only" selected>' in r.text and '<option value="throughput" selected>' in r.text
    assert r.text.count('aria-invalid="true"') == 4
    assert "Preview (nothing created yet)" not in r.text and 'value="submit"' not in r.text
    assert _status(fleet, "bad-name") == 404 and _status(fleet, "Bad_Name") == 404
    # Nothing entered at all: each required field is named.
    r = admin.post(PAGE, {"action": "preview"})
    assert r.status_code == 422
    for named in ("tenant.name is required", "tenant.namespaces is required",
                  "tenant.entitlements: enter the GPUs of at least one GPU class"):  # fmt: skip
        assert named in _text(r.text), named


def test_a_policy_the_pdp_denies_is_refused_before_and_after_submit(fleet: Fleet, admin: Session) -> None:
    # MI300X is offered in eu-central only: a US-only tenant cannot be given any.
    denied = _form(
        "usco", data_residency="us-only", **{"entitlement_H100-80GB": "", "entitlement_MI300X": "2"}
    )
    admin.get(PAGE)
    r = admin.post(PAGE, denied)
    assert r.status_code == 200 and "DENY" in r.text and "ENTITLEMENT_UNSATISFIABLE" in r.text, r.text
    assert 'value="submit"' not in r.text
    r = admin.post(PAGE, {**denied, "action": "submit"})
    assert r.status_code == 403 and "ENTITLEMENT_UNSATISFIABLE" in r.text and 'class="token"' not in r.text
    assert _status(fleet, "usco") == 404


def test_a_dedicated_tenant_needs_approval_before_and_after_submit(fleet: Fleet, admin: Session) -> None:
    # No dedicated pool of its own in the fleet: the PDP asks an admin (DEDICATED_POOL_PROVISIONING).
    dedicated = _form("dedico", tier="enterprise", isolation="dedicated")
    admin.get(PAGE)
    r = admin.post(PAGE, dedicated)
    assert r.status_code == 200 and "NEEDS_APPROVAL" in r.text and "DEDICATED_POOL_PROVISIONING" in r.text
    assert "Onboard (needs approval)" in r.text and _status(fleet, "dedico") == 404
    r = admin.post(PAGE, {**dedicated, "action": "submit"})
    assert r.status_code == 200 and "Onboarded dedico" in _text(r.text), r.text
    assert "Waiting for approval by a platform admin (DEDICATED_POOL_PROVISIONING)" in _text(r.text)
    with fleet.worker.client() as c:
        assert c.get("/v1/tenants/dedico").json()["state"] == "pending"
    assert "dedico" in admin.get("/console/admin/approvals").text


def test_a_tenant_session_cannot_reach_the_form(fleet: Fleet) -> None:
    s = Session(fleet.worker)
    assert s.login("acme-ui", fleet.tokens["acme-ui"]).status_code == 303
    nav = s.get("/console/tenants/acme-ui").text  # a valid CSRF field: the refusal below is not CSRF's
    assert PAGE not in nav
    assert s.get(PAGE).status_code == 403
    for action in ("preview", "submit"):
        r = s.post(PAGE, _form("tenantmade", action=action))
        assert r.status_code == 403 and "for platform admins" in r.text, r.text
    s.close()
    assert _status(fleet, "tenantmade") == 404


def test_a_post_without_the_csrf_field_is_refused(fleet: Fleet, admin: Session) -> None:
    admin.get(PAGE)
    r = admin.post(PAGE, _form("nocsrf", action="submit"), csrf=False)
    assert r.status_code == 403 and "not sent by this console" in _text(r.text), r.text
    r = admin.post(PAGE, {**_form("nocsrf", action="submit"), "csrf": "forged"}, csrf=False)
    assert r.status_code == 403
    assert _status(fleet, "nocsrf") == 404
