"""Cookie flags by where the console is reached: Secure off loopback and over HTTPS, so a session
or a CSRF cookie never travels in plaintext off the machine; always HttpOnly and SameSite=Strict.
(The sign-in page needs no worker: it sets the CSRF cookie of its form.)"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pdp.product import console


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [
        ("http://127.0.0.1:8080", False),
        ("http://localhost:8080", False),
        ("http://console.example.org", True),
        ("http://10.0.0.7:8080", True),
        ("https://127.0.0.1:8443", True),
    ],
)
def test_cookies_are_secure_off_loopback(base_url: str, secure: bool) -> None:
    api = FastAPI()
    api.mount(console.PREFIX, console.create(api))
    with TestClient(api, base_url=base_url) as client:
        r = client.get("/console/login")
    assert r.status_code == 200
    [cookie] = [c for c in r.headers.get_list("set-cookie") if c.startswith("pdp_console_csrf=")]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert ("secure" in flags) is secure, cookie
    assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none': no script
    assert r.headers["cache-control"] == "no-store"
