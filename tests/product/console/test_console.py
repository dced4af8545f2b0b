"""The console without a browser: sign-in, CSRF, preview and submission through the API's code
path, escaping, revocation ending a session, and a tenant kept to its own data on every URL."""

from __future__ import annotations

import re

import pytest

from tests.lifecycle.harness import h100_deployment
from tests.product.console.conftest import Fleet
from tests.product.console.web import Session


@pytest.fixture
def tenant(fleet: Fleet) -> Session:
    s = Session(fleet.worker)
    assert s.login("acme-ui", fleet.tokens["acme-ui"]).status_code == 303
    yield s  # type: ignore[misc]
    s.close()


@pytest.fixture
def admin(fleet: Fleet) -> Session:
    s = Session(fleet.worker)
    assert s.login("admin", fleet.worker.admin_token).status_code == 303
    yield s  # type: ignore[misc]
    s.close()


def test_pages_need_a_session_and_a_valid_token(fleet: Fleet) -> None:
    s = Session(fleet.worker)
    r = s.get("/console/tenants/acme-ui")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    r = s.login("acme-ui", "not-a-token-" + "x" * 40)
    assert r.status_code == 401 and "pdp_console_session" not in r.headers.get("set-cookie", "")
    r = s.login("acme-ui", fleet.tokens["acme-ui"])
    assert r.status_code == 303
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("pdp_console_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert s.get("/console/").headers["location"] == "/console/tenants/acme-ui"
    s.close()


def test_every_post_needs_the_csrf_field_of_its_own_session(fleet: Fleet, tenant: Session) -> None:
    deploy = {"deployment": "csrf-probe", "gpu_class": "H100-80GB", "gpus_per_replica": "1",
              "replicas": "1", "cluster": "eu-west", "action": "submit"}  # fmt: skip
    tenant.get("/console/tenants/acme-ui/deploy")
    assert tenant.post("/console/tenants/acme-ui/deploy", deploy, csrf=False).status_code == 403
    forged = {**deploy, "csrf": "forged"}
    assert tenant.post("/console/tenants/acme-ui/deploy", forged, csrf=False).status_code == 403
    # A field and cookie issued to another session (the other tenant's) do not pass either.
    other = Session(fleet.worker)
    other.login("globex-ui", fleet.tokens["globex-ui"])
    other.get("/console/tenants/globex-ui")
    tenant.http.cookies.set("pdp_console_csrf", other.http.cookies["pdp_console_csrf"], path="/console")
    r = tenant.post("/console/tenants/acme-ui/deploy", {**deploy, "csrf": other.csrf}, csrf=False)
    assert r.status_code == 403
    other.close()
    with fleet.worker.client(fleet.tokens["acme-ui"]) as c:
        names = [d["name"] for d in c.get("/v1/tenants/acme-ui/deployments").json()]
    assert "csrf-probe" not in names


def test_preview_shows_the_decision_and_submits_nothing(fleet: Fleet, tenant: Session) -> None:
    tenant.get("/console/tenants/acme-ui/deploy")
    form = {"deployment": "us-try", "gpu_class": "H100-80GB", "gpus_per_replica": "1",
            "replicas": "1", "cluster": "us-east", "action": "preview"}  # fmt: skip
    r = tenant.post("/console/tenants/acme-ui/deploy", form)
    assert r.status_code == 200 and "RESIDENCY_VIOLATION" in r.text and "DENY" in r.text, r.text
    assert 'value="submit"' not in r.text  # a refused request offers no submit button
    assert "Decision id" in r.text and "Bundle revision" in r.text
    # Submitting anyway goes through the API's check, which refuses it the same way.
    r = tenant.post("/console/tenants/acme-ui/deploy", {**form, "action": "submit"})
    assert "RESIDENCY_VIOLATION" in r.text
    with fleet.worker.client(fleet.tokens["acme-ui"]) as c:
        assert "us-try" not in [d["name"] for d in c.get("/v1/tenants/acme-ui/deployments").json()]


def test_submission_runs_the_api_request_and_the_overview_shows_placement(
    fleet: Fleet, tenant: Session
) -> None:
    tenant.get("/console/tenants/acme-ui/deploy")
    form = {"deployment": "chat", "gpu_class": "H100-80GB", "gpus_per_replica": "1",
            "replicas": "2", "cluster": "eu-west", "action": "preview"}  # fmt: skip
    r = tenant.post("/console/tenants/acme-ui/deploy", form)
    assert "ALLOW" in r.text and 'value="submit"' in r.text, r.text
    r = tenant.post("/console/tenants/acme-ui/deploy", {**form, "action": "submit"})
    assert "Submitted: applied" in r.text, r.text
    page = tenant.get("/console/tenants/acme-ui").text
    assert 'id="deployment-chat"' in page and "eu-west" in page and "2 / 4" in page
    # The decision that placed it leads to its audit records, the tenant's own.
    decision_id = re.search(r'id="deployment-chat".*?<code>([0-9a-f-]{36})</code>', page, re.S)
    assert decision_id, page
    records = tenant.get(f"/console/tenants/acme-ui/audit?decision_id={decision_id.group(1)}")
    assert (
        records.status_code == 200 and "deployment.transition" in records.text and "decision" in records.text
    )


def test_values_are_escaped(fleet: Fleet, admin: Session) -> None:
    page = admin.get("/console/tenants/globex-ui").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;globex&#39;)&lt;/script&gt;" in page


def test_a_tenant_sees_only_its_own_data(fleet: Fleet, tenant: Session) -> None:
    with fleet.worker.client(fleet.tokens["globex-ui"]) as c:
        r = c.post("/v1/tenants/globex-ui/deployments", json=h100_deployment("theirs", 1))
        assert r.status_code == 202, r.text
    workflow_id = r.json()["workflow_id"]
    with fleet.worker.client() as c:  # the admin's API: a decision of globex-ui's in the decision log
        theirs = c.get("/v1/tenants/globex-ui/decisions").json()[-1]["decision_id"]
    forbidden = [
        "/console/admin/approvals", "/console/admin/tenants", "/console/admin/audit",
        "/console/admin/capacity", "/console/admin/decisions", "/console/admin/decisions?tenant=globex-ui",
        "/console/admin/decisions?tenant=acme-ui", "/console/admin/bundles",
    ]  # fmt: skip
    hidden = [
        "/console/tenants/globex-ui", "/console/tenants/globex-ui/deploy",
        "/console/tenants/globex-ui/deployments/theirs/scale",
        f"/console/tenants/globex-ui/requests/{workflow_id}",
        f"/console/tenants/acme-ui/requests/{workflow_id}",  # their request under its own tenant
        "/console/tenants/no-such-tenant",
        "/console/tenants/globex-ui/ask/quota", "/console/tenants/globex-ui/ask/offboard",
        "/console/tenants/globex-ui/audit", f"/console/tenants/globex-ui/audit?workflow_id={workflow_id}",
        "/console/tenants/globex-ui/decisions", "/console/tenants/globex-ui/decisions?outcome=ALLOW",
        f"/console/tenants/globex-ui/decisions?decision_id={theirs}",
    ]  # fmt: skip
    for url in forbidden:
        assert tenant.get(url).status_code == 403, url
    for url in hidden:
        r = tenant.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert "theirs" not in r.text or url.endswith("scale")
    tenant.get("/console/tenants/acme-ui")  # a valid CSRF field: the refusals below are not CSRF's
    posts = {
        f"/console/admin/approvals/{workflow_id}": ({"verdict": "approve"}, 403),
        "/console/tenants/globex-ui/deploy": (
            {"deployment": "x", "gpu_class": "H100-80GB", "gpus_per_replica": "1", "replicas": "1",
             "action": "submit"}, 404),
        "/console/tenants/globex-ui/deployments/theirs/scale": (
            {"target_replicas": "3", "action": "submit"}, 404),
        "/console/tenants/globex-ui/ask/offboard": ({"reason": "x", "action": "submit"}, 404),
    }  # fmt: skip
    for url, (data, status) in posts.items():
        assert tenant.post(url, data).status_code == status, url
    # Their decision id searched under its own tenant finds nothing: the tenant filter is forced.
    own = tenant.get(f"/console/tenants/acme-ui/decisions?decision_id={theirs}")
    assert own.status_code == 200 and "0 decision(s) match" in own.text
    rows = own.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert theirs not in rows and "globex-ui" not in own.text
    with fleet.worker.client() as c:
        spec = [d for d in c.get("/v1/tenants/globex-ui/deployments").json() if d["name"] == "theirs"]
    assert spec and spec[0]["spec"]["replicas"] == 1


def test_revoking_the_token_ends_the_session(fleet: Fleet) -> None:
    with fleet.worker.client() as c:
        r = c.post("/v1/tenants/globex-ui/tokens", json={})
        assert r.status_code == 201, r.text
        fresh = r.json()["token"]
    s = Session(fleet.worker)
    s.login("globex-ui", fresh)
    assert s.get("/console/tenants/globex-ui").status_code == 200
    with fleet.worker.client() as c:
        assert c.post("/v1/tenants/globex-ui/tokens", json={}).status_code == 201  # rotates `fresh` out
    r = s.get("/console/tenants/globex-ui")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    s.close()


def test_the_other_requests_preview_and_submit(fleet: Fleet, tenant: Session) -> None:
    with fleet.worker.client(fleet.tokens["acme-ui"]) as c:
        r = c.post("/v1/tenants/acme-ui/deployments", json=h100_deployment("batchy", 1, cluster="eu-west"))
        assert r.status_code == 202, r.text
    fleet.worker.wait_workflow(r.json()["workflow_id"])
    ask = "/console/tenants/acme-ui/ask"

    tenant.get(f"{ask}/batch-size")
    r = tenant.post(f"{ask}/batch-size", {"deployment": "batchy", "batch_size": "64", "action": "preview"})
    assert "BATCH_SIZE_ABOVE_SLA" in r.text and 'value="submit"' not in r.text, r.text
    r = tenant.post(f"{ask}/batch-size", {"deployment": "batchy", "batch_size": "16", "action": "submit"})
    assert "Submitted:" in r.text, r.text
    fleet.worker.wait_workflow(_request_id(r.text))
    with fleet.worker.client(fleet.tokens["acme-ui"]) as c:
        [batchy] = [d for d in c.get("/v1/tenants/acme-ui/deployments").json() if d["name"] == "batchy"]
    assert batchy["spec"]["batch_size"] == 16

    tenant.get(f"{ask}/gpu-sharing")
    r = tenant.post(f"{ask}/gpu-sharing", {"mode": "time-slicing", "gpu_class": "", "action": "preview"})
    assert "SHARING_NOT_ALLOWED" in r.text and "DENY" in r.text, r.text

    r = tenant.get(f"{ask}/quota")
    assert 'id="q_H100-80GB"' in r.text and 'value="4"' in r.text  # the current entitlement
    r = tenant.post(f"{ask}/quota", {"q_H100-80GB": "8", "action": "preview"})
    assert "NEEDS_APPROVAL" in r.text and "QUOTA_APPROVAL_REQUIRED" in r.text
    assert "rises from 4 to 8" in r.text

    tenant.get(f"{ask}/sla")
    r = tenant.post(f"{ask}/sla", {"tier": "", "isolation": "", "action": "preview"})
    assert 'class="error"' in r.text and "Preview (nothing submitted yet)" not in r.text, r.text
    r = tenant.post(f"{ask}/sla", {"tier": "standard", "isolation": "", "action": "preview"})
    assert "Preview (nothing submitted yet)" in r.text, r.text

    tenant.get(f"{ask}/offboard")
    r = tenant.post(f"{ask}/offboard", {"reason": "just looking", "action": "preview"})
    assert "Preview (nothing submitted yet)" in r.text, r.text
    with fleet.worker.client(fleet.tokens["acme-ui"]) as c:
        assert c.get("/v1/tenants/acme-ui").json()["state"] == "active"  # a preview changes nothing


def _request_id(page: str) -> str:
    found = re.search(r"/requests/([^\"]+)\"", page)
    assert found, page
    return found.group(1)


def test_the_decision_explorer_searches_the_decision_log(
    fleet: Fleet, admin: Session, tenant: Session
) -> None:
    """Decisions the PDP made for the lifecycle, found by id, tenant, outcome, reason and time."""
    with fleet.worker.client(fleet.tokens["acme-ui"]) as c:
        abroad = {**h100_deployment("explorer-us", 1), "cluster": "us-east"}
        r = c.post("/v1/tenants/acme-ui/deployments", json=abroad)
        assert r.status_code == 403, r.text
    denied = r.json()["detail"]["decision_id"]
    page = admin.get(f"/console/admin/decisions?decision_id={denied}")
    assert page.status_code == 200 and denied in page.text and "RESIDENCY_VIOLATION" in page.text
    assert re.search(r"1 decision\(s\) match", page.text)
    by_reason = admin.get("/console/admin/decisions?tenant=acme-ui&outcome=DENY&reason=residency_violation")
    assert denied in by_reason.text and "globex-ui" not in by_reason.text
    assert denied not in admin.get("/console/admin/decisions?outcome=ALLOW").text
    assert denied not in admin.get("/console/admin/decisions?tenant=globex-ui").text
    assert denied not in admin.get("/console/admin/decisions?until=2000-01-01").text
    assert denied in admin.get("/console/admin/decisions?since=2000-01-01T00:00Z").text
    bad = admin.get("/console/admin/decisions?since=yesterday")
    assert bad.status_code == 422 and "since: &#39;yesterday&#39; is not an ISO 8601 time" in bad.text
    assert admin.get("/console/admin/decisions?outcome=MAYBE").status_code == 422
    # The tenant finds it on its own page; the admin too, under that tenant.
    assert denied in tenant.get("/console/tenants/acme-ui/decisions?reason=RESIDENCY_VIOLATION").text
    assert denied in admin.get("/console/tenants/acme-ui/decisions").text


def test_the_bundle_page_shows_the_active_revision_and_its_history(admin: Session) -> None:
    page = admin.get("/console/admin/bundles")
    assert page.status_code == 200
    active = re.search(r'<code id="active-revision">([^<]+)</code>', page.text)
    assert active and active.group(1) != "unknown"
    rows = re.findall(r"<tr><td><code>([^<]+)</code></td>.*?<td>(<strong>active</strong>|replaced)</td></tr>",
                      page.text, re.S)  # fmt: skip
    assert rows and rows[0] == (active.group(1), "<strong>active</strong>")
    assert all(state == "replaced" for _, state in rows[1:])
    # Onboarding two tenants rebuilt the bundle: each revision OPA activated is a line.
    assert len(rows) >= 3 and len({revision for revision, _ in rows}) >= 2
    assert "are intact" in page.text and "sha256:" in page.text
