"""The console in a real browser: Debian's chromium, headless, driven by Selenium through
chromium-driver (both installed by scripts/setup-browser) against a worker on loopback.

The walk of issue 14: a tenant signs in, deploys to an EU cluster (ALLOW), tries a US cluster and
sees RESIDENCY_VIOLATION, scales past its entitlement and sees the approval notice; the admin
approves in the queue, the audit page verifies and the bundle page shows the active revision and
its history, and onboards a tenant from the form (the preview, then its one-time token); the tenant
sees the new replicas and its own refused decisions in the decision log, and is refused the
onboarding form. Every page it passes has a label for each control, and the forms are used from
the keyboard. With PDP_CONSOLE_SCREENSHOTS=<folder> each main page is saved there as PNG
(docs/console/ holds them).
"""

from __future__ import annotations

import time

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.product.console.browser import AXE, RUN_AXE, UNLABELLED, Walk, needs_browser
from tests.product.console.conftest import Fleet

pytestmark = needs_browser


def test_tenant_deploys_is_refused_abroad_scales_past_entitlement_and_the_admin_approves(
    fleet: Fleet, browser: WebDriver
) -> None:
    walk = Walk(browser, fleet.worker.url)
    walk.sign_in("acme-ui", fleet.tokens["acme-ui"])
    assert "Entitlements and usage" in walk.text()
    walk.shot("tenant-overview-empty")

    # Deploy to an EU cluster: the preview says ALLOW, then the submission applies it.
    walk.open("/console/tenants/acme-ui/deploy")
    walk.fill({"deployment": "chat", "gpu_class": "H100-80GB", "gpus_per_replica": "1", "replicas": "2",
               "cluster": "eu-west"})  # fmt: skip
    walk.press("preview")
    assert "Preview (nothing submitted yet): ALLOW" in walk.text()
    walk.shot("deploy-preview-allow")
    walk.press("submit")
    # "accepted" when the tenant's serialization took longer than the API waits for a decision.
    assert "Submitted: applied" in walk.text() or "Submitted: accepted" in walk.text(), walk.text()

    def running() -> bool:
        walk.open("/console/tenants/acme-ui")
        cells = browser.find_elements(By.CSS_SELECTOR, "#deployment-chat .state")
        return bool(cells) and cells[0].text == "running"

    walk.wait_for(running, "the deployment")

    # A US cluster: the tenant is EU-only, the preview names the residency rule and offers no submit.
    walk.open("/console/tenants/acme-ui/deploy")
    walk.fill({"deployment": "chat-us", "gpu_class": "H100-80GB", "gpus_per_replica": "1", "replicas": "1",
               "cluster": "us-east"})  # fmt: skip
    walk.press("preview")
    text = walk.text()
    assert "DENY" in text and "RESIDENCY_VIOLATION" in text, text
    assert not browser.find_elements(By.CSS_SELECTOR, "button[value=submit]")
    walk.shot("deploy-preview-residency-deny")

    # Scale past the entitlement of 4: approval needed, said before and after submitting.
    walk.open("/console/tenants/acme-ui/deployments/chat/scale")
    walk.fill({"target_replicas": "6"})
    walk.press("preview")
    assert "NEEDS_APPROVAL" in walk.text() and "QUOTA_APPROVAL_REQUIRED" in walk.text()
    walk.press("submit")
    answered = walk.text()
    assert "Waiting for approval by a platform admin" in answered or "Submitted: accepted" in answered
    walk.shot("scale-awaiting-approval")

    def listed() -> bool:
        walk.open("/console/tenants/acme-ui")
        return bool(browser.find_elements(By.CSS_SELECTOR, "ul.approvals li"))

    walk.wait_for(listed, "the request in the approvals of the overview")
    assert "QUOTA_APPROVAL_REQUIRED" in browser.find_element(By.CSS_SELECTOR, "ul.approvals").text
    walk.shot("tenant-overview")
    walk.sign_out()

    # The admin approves it in the queue, with a comment.
    walk.sign_in("admin", fleet.worker.admin_token)
    walk.open("/console/admin/approvals")
    assert "scale by acme-ui" in walk.text()
    walk.shot("admin-approvals")
    walk.fill({"comment-1": "approved for the launch week"})
    walk.submit_with_enter(browser.find_element(By.CSS_SELECTOR, "#approval-1 button[value=approve]"))
    # The answer is sent to the waiting request, which decides again and applies it on its own time.
    assert browser.find_element(By.CSS_SELECTOR, "p.notice").text.endswith(": approved")
    walk.open("/console/admin/tenants")
    active = browser.find_element(By.XPATH, "//table[@class='states']//tr[th[normalize-space()='active']]")
    assert "acme-ui" in active.text and "globex-ui" in active.text, active.text
    walk.shot("admin-tenants")
    walk.open("/console/admin/capacity")
    assert browser.find_element(By.ID, "bundle-revision").text not in ("", "unknown")
    assert "eu-west-1" in walk.text() and "H100-80GB" in walk.text()
    walk.shot("admin-capacity")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    walk.open(f"/console/admin/decisions?tenant=acme-ui&reason=QUOTA_APPROVAL_REQUIRED&since={today}")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.decisions tbody tr")
    assert rows and all("QUOTA_APPROVAL_REQUIRED" in row.text for row in rows)
    walk.shot("admin-decisions")
    # The revision OPA serves, and the history of what the PDP activated (digest and signer).
    walk.open("/console/admin/bundles")
    active = browser.find_element(By.ID, "active-revision").text
    assert active not in ("", "unknown")
    newest = browser.find_element(By.CSS_SELECTOR, "table.bundles tbody tr")
    assert active in newest.text and "active" in newest.text and "sha256:" in newest.text
    assert "intact" in browser.find_element(By.ID, "history-check").text
    walk.shot("admin-bundles")
    walk.open("/console/admin/audit")
    assert browser.find_element(By.ID, "audit-status").text == "verified"
    walk.shot("admin-audit")
    # The operator's pages of issue 30, each axe-clean (this worker reads no Prometheus: the
    # charts say so; the enforcement chart is drawn from the decision log).
    walk.open("/console/admin/enforcement")
    assert "RESIDENCY_VIOLATION" in browser.find_element(By.ID, "by-reason").text
    assert browser.find_elements(By.CSS_SELECTOR, "#denials-per-hour svg polyline")
    walk.shot("admin-enforcement")
    for name in ("usage", "waste", "sla", "incidents", "drift", "rollouts"):
        walk.open(f"/console/admin/{name}")
        # their screenshots with real data: test_usage_charts.py and test_charts.py (series),
        # test_incident_timeline.py (an incident)
        if name not in ("usage", "waste", "sla", "incidents"):
            walk.shot(f"admin-{name}")
    # Onboarding a tenant from the form: the preview creates nothing, the submission shows the
    # tenant's one-time token and the onboarding request, and the tenant appears in the list.
    walk.open("/console/admin/tenants/new")
    walk.fill({"name": "Walk_Co", "display_name": "Walk Co", "data_residency": "eu-only",
               "namespaces": "walkco-prod, walkco-dev", "entitlement_H100-80GB": "2",
               "sla_class": "throughput", "sla_availability": "99.5"})  # fmt: skip
    walk.press("preview")  # a name the schema refuses: named beside its control, the rest kept
    assert "tenant.name: 'Walk_Co' does not match" in browser.find_element(By.ID, "name-error").text
    assert browser.find_element(By.ID, "namespaces").get_attribute("value") == "walkco-prod, walkco-dev"
    walk.shot("admin-onboard-problem")
    walk.fill({"name": "walkco"})
    walk.press("preview")
    assert "Preview (nothing created yet): ALLOW" in walk.text(), walk.text()
    with fleet.worker.client() as c:
        assert c.get("/v1/tenants/walkco").status_code == 404
    walk.shot("admin-onboard-preview")
    walk.press("submit")
    assert "Onboarded walkco" in walk.text(), walk.text()
    assert browser.find_element(By.CSS_SELECTOR, "#tenant-token code.token").text
    walk.shot("admin-onboard-result")
    with fleet.worker.client() as c:
        assert c.get("/v1/tenants/walkco").status_code == 200
    walk.sign_out()

    # The tenant sees the new replicas once the approved request applied.
    walk.sign_in("acme-ui", fleet.tokens["acme-ui"])

    def six_replicas() -> bool:
        walk.open("/console/tenants/acme-ui")
        cells = browser.find_elements(By.CSS_SELECTOR, "#deployment-chat .replicas")
        return bool(cells) and cells[0].text == "6"

    walk.wait_for(six_replicas, "the approved scale")
    assert "6 / 4" in walk.text()
    walk.shot("tenant-overview-after-approval")
    # Its own decisions from the PDP's log: the residency refusal among them.
    walk.open("/console/tenants/acme-ui/decisions?outcome=DENY")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.decisions tbody tr")
    assert rows and any("RESIDENCY_VIOLATION" in row.text for row in rows)
    assert all("acme-ui" in row.text and "DENY" in row.text for row in rows)
    walk.shot("tenant-decisions")
    walk.open("/console/tenants/acme-ui/enforcement")
    assert "RESIDENCY_VIOLATION" in browser.find_element(By.ID, "by-reason").text
    walk.shot("tenant-enforcement")
    for name in ("usage", "waste", "sla", "incidents", "drift"):
        walk.open(f"/console/tenants/acme-ui/{name}")
        if name not in ("usage", "incidents"):  # theirs with real data: as above
            walk.shot(f"tenant-{name}")
    # The onboarding form is the admin's: a tenant is refused it.
    assert not browser.find_elements(By.CSS_SELECTOR, 'a[href="/console/admin/tenants/new"]')
    walk.open("/console/admin/tenants/new")
    assert "403" in walk.text() and "for platform admins" in walk.text(), walk.text()


def test_the_accessibility_check_finds_what_it_should(browser: WebDriver) -> None:
    """The checks above can fail: a page with an unlabelled input and an image without text."""
    browser.get("data:text/html,<html lang=en><title>t</title><main><input id=q><img src=x></main></html>")
    assert browser.execute_script(UNLABELLED) == ['<input id="q">']
    browser.execute_script(AXE.read_text())
    found = {v["id"] for v in browser.execute_async_script(RUN_AXE)}
    assert {"label", "image-alt"} <= found, found
