"""A console session as a browser without JavaScript keeps it: cookies, and the CSRF field of the
last page's forms."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.lifecycle.harness import Worker

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Session:
    def __init__(self, worker: Worker) -> None:
        self.http = httpx.Client(base_url=worker.url, timeout=60, follow_redirects=False)
        self.csrf = ""

    def get(self, path: str, **kw: Any) -> httpx.Response:
        r = self.http.get(path, **kw)
        self._remember(r)
        return r

    def post(self, path: str, data: dict[str, str], csrf: bool = True) -> httpx.Response:
        body = {"csrf": self.csrf, **data} if csrf else data
        r = self.http.post(path, data=body)
        self._remember(r)
        return r

    def _remember(self, r: httpx.Response) -> None:
        found = CSRF.search(r.text)
        if found:
            self.csrf = found.group(1)

    def login(self, account: str, token: str) -> httpx.Response:
        """Sign in to `account` (a tenant's name, or "admin") with `token`."""
        self.get("/console/login")
        return self.post("/console/login", {"account": account, "token": token})

    def close(self) -> None:
        self.http.close()
