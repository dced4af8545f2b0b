"""Fuzzing the bundle server with request paths and validators: it answers every GET without a
5xx or a hang, and serves exactly the files of its folder, by name, never anything outside it or
hidden in it."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from pdp.bundles.server import BundleServer
from tests.fuzz.strategies import FUZZ, HANG

SERVED = {"gpupaas.tar.gz": os.urandom(700), "gpupaas-r1.tar.gz": os.urandom(300)}


@dataclass(frozen=True)
class Served:
    port: int
    root: Path
    secrets: tuple[bytes, ...]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("bundle-fuzz")
    folder = root / "bundles"
    folder.mkdir()
    for name, data in SERVED.items():
        (folder / name).write_bytes(data)
    secrets = (b"private key outside the folder", b"hidden file inside it")
    (root / "signing.key.pem").write_bytes(secrets[0])
    (folder / ".signing.key.pem").write_bytes(secrets[1])
    with BundleServer(folder) as server:
        yield Served(int(urlsplit(server.url).port or 0), root, secrets)


traversals = st.sampled_from(
    [
        "/../signing.key.pem",
        "/%2e%2e/signing.key.pem",
        "/..%2fsigning.key.pem",
        "/.signing.key.pem",
        "//etc/passwd",
        "/bundles/../signing.key.pem",
        "/gpupaas.tar.gz/",
        "/gpupaas.tar.gz?x=../../signing.key.pem",
        "/gpupaas.tar.gz#frag",
        "/%00",
    ]
)
paths = (
    traversals
    | st.sampled_from(sorted(SERVED)).map(lambda n: f"/{n}")
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40).map(lambda t: f"/{t}")
)


@FUZZ
@given(path=paths, etag=st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
def test_only_the_folders_files_are_served(served: Served, path: str, etag: str | None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=HANG)
    try:
        headers = {"If-None-Match": etag} if etag is not None else {}
        try:
            conn.request("GET", path, headers=headers)
        except http.client.InvalidURL:
            event("not sendable")
            return
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    event(f"HTTP {response.status}")
    assert response.status < 500, (path, response.status)
    assert not any(secret in body for secret in served.secrets), path
    if response.status == 200:
        name = urlsplit(path).path.lstrip("/")
        assert body == SERVED[name], path
    else:
        assert response.status in (304, 400, 404), (path, response.status)
