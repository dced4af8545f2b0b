"""Console sessions held by the server (issue 28, hole 8): the cookie carries an opaque session id,
never the token; signing out, rotating the token or letting the session idle or age past its limit
ends it for good; the sign-in is throttled per source address and per account.

In process (no worker): the console over a real credential store on SQLite, reached through
Starlette's test client, whose `client` sets the source address each request comes from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pdp.lifecycle import runtime
from pdp.lifecycle.runtime import Runtime, Settings
from pdp.lifecycle.storage.db import Database
from pdp.lifecycle.storage.store import Store
from pdp.product import console

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
COOKIE = "pdp_console_session"


class Fleet:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens = {
            tenant: store.credentials.issue_tenant(tenant, actor="test").token
            for tenant in ("acme", "globex")
        }


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    db = Database(f"sqlite:///{tmp_path / 'lc.sqlite'}")
    store = Store(db)
    # The console asks the credential store through the lifecycle's services, which read the
    # installed runtime; nothing else of it is used here.
    rt = Runtime(db, store, adapter=None, policy=None, settings=Settings())  # type: ignore[arg-type]
    monkeypatch.setattr(runtime, "_current", rt)
    yield Fleet(store)
    db.close()


def console_app(**options: Any) -> FastAPI:
    api = FastAPI()
    api.mount(console.PREFIX, console.create(api, **options))
    return api


def browser(app: FastAPI, source: str = "192.0.2.10") -> TestClient:
    # https: the cookies are Secure off loopback, and the client only sends those over TLS.
    return TestClient(
        app, base_url="https://console.example.org", follow_redirects=False, client=(source, 40000)
    )


def csrf_of(client: TestClient, path: str = "/console/login") -> str:
    found = CSRF.search(client.get(path).text)
    assert found, path
    return found.group(1)


def signed_in_as(client: TestClient) -> str:
    """Where the console's home sends this browser: its own tenant's page, or sign-in."""
    r = client.get("/console/")
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


def sign_in(client: TestClient, account: str, token: str) -> Any:
    data = {"csrf": csrf_of(client), "account": account, "token": token}
    return client.post("/console/login", data=data)


def test_the_cookie_is_an_opaque_session_id_not_the_token(fleet: Fleet) -> None:
    with browser(console_app()) as c:
        r = sign_in(c, "acme", fleet.tokens["acme"])
        assert r.status_code == 303, r.text
        value = c.cookies[COOKIE]
        token = fleet.tokens["acme"]
        assert value != token
        # Nor any recognisable part of it: the random body of the token, or its prefix and body.
        body = token.removeprefix("gpupaas_")
        assert body[:16] not in value and token not in value
        assert signed_in_as(c) == "/console/tenants/acme"


def test_signing_out_ends_the_session_on_the_server(fleet: Fleet) -> None:
    app = console_app()
    with browser(app) as c:
        assert sign_in(c, "acme", fleet.tokens["acme"]).status_code == 303
        stolen = c.cookies[COOKIE]
        assert signed_in_as(c) == "/console/tenants/acme"
        r = c.post("/console/logout", data={"csrf": csrf_of(c)})
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
    # Someone who kept the cookie's value replays it in a browser of their own.
    with browser(app, source="198.51.100.7") as replay:
        replay.cookies.set(COOKIE, stolen, domain="console.example.org", path="/console")
        assert signed_in_as(replay) == "/console/login"


def test_rotating_the_token_ends_the_sessions_made_with_it(fleet: Fleet) -> None:
    with browser(console_app()) as c:
        assert sign_in(c, "globex", fleet.tokens["globex"]).status_code == 303
        assert signed_in_as(c) == "/console/tenants/globex"
        fresh = fleet.store.credentials.rotate(
            "tenant", "globex", actor="tenant:globex"
        )  # what the API's rotation runs
        assert signed_in_as(c) == "/console/login"
        # The new token signs in as usual.
        assert sign_in(c, "globex", fresh.token).status_code == 303


def test_guessing_is_throttled_per_source_and_others_still_sign_in(fleet: Fleet) -> None:
    app = console_app()
    answers = []
    with browser(app, source="203.0.113.66") as attacker:
        for n in range(50):
            r = sign_in(attacker, "acme", f"gpupaas_guess{n:04d}" + "x" * 30)
            answers.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
        # The attacker's right token is refused too while its address is throttled: the throttle
        # answers before any token is checked, so it says nothing about the guess.
        assert sign_in(attacker, "acme", fleet.tokens["acme"]).status_code == 429
    assert set(answers) <= {401, 429}
    assert answers.count(401) <= 10 and answers[-1] == 429, answers
    with browser(app, source="192.0.2.44") as other:
        r = sign_in(other, "globex", fleet.tokens["globex"])
        assert r.status_code == 303, r.text
        assert signed_in_as(other) == "/console/tenants/globex"


def test_guessing_one_account_from_many_sources_is_throttled_per_account(fleet: Fleet) -> None:
    app = console_app()
    answers = []
    for n in range(40):
        with browser(app, source=f"198.18.{n // 200}.{n % 200 + 1}") as c:
            answers.append(sign_in(c, "acme", f"gpupaas_guess{n:04d}" + "y" * 30).status_code)
    assert answers.count(401) <= 20 and answers[-1] == 429, answers
    # Another account is not starved by the failures on this one.
    with browser(app, source="192.0.2.45") as other:
        assert sign_in(other, "globex", fleet.tokens["globex"]).status_code == 303


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("limit", ["idle", "absolute"])
def test_an_expired_session_is_refused(fleet: Fleet, limit: str) -> None:
    from pdp.product.console.sessions import Sessions

    clock = Clock()
    sessions = Sessions(idle=1800, absolute=12 * 3600, clock=clock)
    with browser(console_app(sessions=sessions)) as c:
        assert sign_in(c, "acme", fleet.tokens["acme"]).status_code == 303
        if limit == "idle":
            clock.now += 1799
            assert signed_in_as(c) == "/console/tenants/acme"  # used: the idle limit restarts
            clock.now += 1799
            assert signed_in_as(c) == "/console/tenants/acme"
            clock.now += 1801
        else:
            # Used every 20 minutes, never idle, until it reaches its absolute limit.
            for _ in range(35):
                clock.now += 1200
                assert signed_in_as(c) == "/console/tenants/acme"
            clock.now += 1200  # 12 h since sign-in
        assert signed_in_as(c) == "/console/login"


def test_a_token_signs_in_to_its_own_account_only(fleet: Fleet) -> None:
    with browser(console_app()) as c:
        r = sign_in(c, "globex", fleet.tokens["acme"])
        assert r.status_code == 401 and COOKIE not in c.cookies
        assert sign_in(c, "acme", fleet.tokens["acme"]).status_code == 303


@pytest.mark.parametrize("account", ["admin", "None"])
def test_a_metrics_token_signs_in_to_no_account(fleet: Fleet, account: str) -> None:
    metrics = fleet.store.credentials.rotate("metrics", None, actor="test").token
    with browser(console_app()) as c:
        r = sign_in(c, account, metrics)
        assert r.status_code == 401 and "is a metrics token" in r.text
        assert COOKIE not in c.cookies and signed_in_as(c) == "/console/login"
