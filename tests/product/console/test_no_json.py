"""No page of the console shows a value as JSON: every page reachable from the admin's and a
tenant's navigation (and their links onwards) is fetched and its text searched for `{"` and `[{`."""

from __future__ import annotations

import html
import re

import pytest

from tests.product.console.conftest import Fleet
from tests.product.console.web import Session

LINK = re.compile(r'href="(/console/[^"#]*)"')
TAG = re.compile(r"<[^>]*>")
BLOB = re.compile(r"""\{["']|\[\{""")
MOST_PAGES = 80


def _walk(s: Session, start: str) -> dict[str, str]:
    """Every console page reachable by links from `start`: its path and its text."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo and len(seen) < MOST_PAGES:
        path = html.unescape(todo.pop(0))
        if path in seen or path.startswith("/console/static"):
            continue
        r = s.get(path)
        assert r.status_code in (200, 303), (path, r.status_code)
        if r.status_code == 303:
            todo.append(r.headers["location"])
            seen[path] = ""
            continue
        seen[path] = html.unescape(TAG.sub(" ", r.text))
        todo.extend(LINK.findall(r.text))
    return seen


@pytest.fixture(scope="module")
def filled(fleet: Fleet) -> Fleet:
    """The fleet with a placed deployment (constraints, placement) and a refused request."""
    s = Session(fleet.worker)
    s.login("acme-ui", fleet.tokens["acme-ui"])
    s.get("/console/tenants/acme-ui/deploy")
    form = {"deployment": "chat", "gpu_class": "H100-80GB", "gpus_per_replica": "1",
            "replicas": "2", "cluster": "eu-west", "action": "submit"}  # fmt: skip
    assert "Submitted" in s.post("/console/tenants/acme-ui/deploy", form).text
    s.get("/console/tenants/acme-ui/deploy")
    s.post("/console/tenants/acme-ui/deploy", {**form, "deployment": "us", "cluster": "us-east"})
    s.close()
    return fleet


@pytest.mark.parametrize("account", ["admin", "acme-ui"])
def test_no_page_shows_a_json_blob(filled: Fleet, account: str) -> None:
    s = Session(filled.worker)
    token = filled.worker.admin_token if account == "admin" else filled.tokens[account]
    assert s.login(account, token).status_code == 303
    pages = _walk(s, "/console/")
    s.close()
    assert len(pages) >= 5, pages.keys()
    blobs = {path: BLOB.search(text) for path, text in pages.items()}
    found = {
        path: text[max(m.start() - 60, 0) : m.start() + 80]
        for path, m in blobs.items()
        if m
        for text in [pages[path]]
    }
    assert not found, found
