"""The PDP pulling the signed wasm bundle from the project's bundle server, over TLS on loopback
(pdp/bundles/follow.py): nothing decides before a bundle verifies, and a bundle that does not
verify (changed after signing, signed by another key, unsigned) is refused while the last good
revision keeps deciding."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pdp import metrics
from pdp.bundles.build import BuiltBundle
from pdp.bundles.follow import BundleFollower
from pdp.bundles.server import BundleServer
from pdp.bundles.signing import KeyPair
from pdp.engine.wasm_reload import ReloadableWasmEngine
from pdp.net.certs import issue_server_cert, make_ca
from pdp.net.servingcert import ServingCertificate
from pdp.opa.bundle import CURRENT_WASM_BUNDLE
from pdp.point import DecisionPoint
from tests.bundles.signed_wasm import DENIED, allow_everywhere, build_signed, keys_in, rewrite, unsigned
from tests.conftest import load_intent


@dataclass
class Served:
    folder: Path  # what the bundle server serves
    server: BundleServer
    ca: Path
    keys: KeyPair
    other_keys: KeyPair
    first: BuiltBundle
    second: BuiltBundle

    @property
    def url(self) -> str:
        return f"{self.server.url}/{CURRENT_WASM_BUNDLE}"

    def publish(self, data: bytes) -> None:
        tmp = self.folder / ".publish"
        tmp.write_bytes(data)
        os.replace(tmp, self.folder / CURRENT_WASM_BUNDLE)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair, BuiltBundle, BuiltBundle]:
    root = tmp_path_factory.mktemp("follow")
    keys, other = keys_in(root / "keys"), keys_in(root / "other")
    first = build_signed(root / "one", keys)
    second = build_signed(root / "two", keys, extra_gpus=8)
    assert first.revision != second.revision
    return keys, other, first, second


@pytest.fixture
def served(tmp_path: Path, builds: tuple[KeyPair, KeyPair, BuiltBundle, BuiltBundle]) -> Iterator[Served]:
    ca = make_ca(tmp_path / "pki" / "ca")
    cert = issue_server_cert(ca, tmp_path / "pki" / "bundles", ["127.0.0.1"])
    folder = tmp_path / "bundles"
    folder.mkdir()
    server = BundleServer(folder, tls=ServingCertificate(cert.cert, cert.key)).start()
    try:
        yield Served(folder, server, ca.cert, *builds)
    finally:
        server.stop()


def _wasm(built: BuiltBundle) -> bytes:
    assert built.wasm_path is not None
    return built.wasm_path.read_bytes()


def _follower(
    served: Served, engine: ReloadableWasmEngine, state: Path, key: Path | None = None
) -> BundleFollower:
    return BundleFollower(
        served.url, key or served.keys.public_key, engine.replace, state_file=state, ca_file=served.ca
    )


def test_nothing_is_allowed_before_a_bundle_verifies(served: Served, tmp_path: Path) -> None:
    engine = ReloadableWasmEngine()
    point = DecisionPoint(engine)
    state = tmp_path / "state" / "verified.tar.gz"
    follower = _follower(served, engine, state)
    intent = load_intent("01-acme-eu-deploy-eu.json")  # ALLOW under the examples' policy
    # Nothing published yet (404), then only bundles that do not verify.
    assert not follower.poll()
    for bad in (rewrite(_wasm(served.first), unsigned), rewrite(_wasm(served.first), allow_everywhere)):
        served.publish(bad)
        assert not follower.poll()
        assert not engine.loaded and follower.revision is None and not state.exists()
        decision = point.decide(intent)
        assert decision.outcome == "DENY" and decision.reason_codes == ["ENGINE_NO_ACTIVE_BUNDLE"]
    assert "changed after signing" in (follower.refusal() or "")
    # Signed by another key: refused too.
    served.publish(_wasm(served.first))
    wrong = _follower(served, engine, state, served.other_keys.public_key)
    assert not wrong.poll() and not engine.loaded
    assert "does not verify" in (wrong.refusal() or "")
    # The real one: decides, and the workers' copy is written owner-only.
    assert follower.poll()
    assert engine.revision == served.first.revision and follower.refusal() is None
    assert point.decide(intent).outcome == "ALLOW"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert state.read_bytes() == _wasm(served.first)


def test_a_bad_revision_is_refused_and_the_last_good_one_keeps_deciding(
    served: Served, tmp_path: Path
) -> None:
    engine = ReloadableWasmEngine()
    point = DecisionPoint(engine)
    state = tmp_path / "verified.tar.gz"
    follower = _follower(served, engine, state)
    denied = load_intent(DENIED)
    served.publish(_wasm(served.first))
    assert follower.poll()
    assert not follower.poll()  # unchanged: a 304, nothing reloaded
    before = metrics.BUNDLE_FAILURES._value.get()
    # Each attack would allow what the signed policy denies, or lose the signature.
    attacks = [
        rewrite(_wasm(served.second), allow_everywhere),
        rewrite(_wasm(served.second), unsigned),
        rewrite(
            _wasm(served.second),
            lambda n, d: d.replace(b"RESIDENCY", b"RESIDENCE") if n == "policy.wasm" else d,
        ),
    ]
    for bad in attacks:
        served.publish(bad)
        assert not follower.poll()
        assert not follower.poll()  # the same bad bundle is refused once, not on every poll
        assert engine.revision == follower.revision == served.first.revision
        decision = point.decide(denied)
        assert decision.outcome == "DENY" and "RESIDENCY_VIOLATION" in decision.reason_codes
        assert decision.bundle_revision == served.first.revision
        assert state.read_bytes() == _wasm(served.first)
    assert metrics.BUNDLE_FAILURES._value.get() == before + len(attacks)
    # The bundle server unreachable: the current revision decides on.
    served.server.stop()
    assert not follower.poll()
    assert point.decide(denied).bundle_revision == served.first.revision


def test_a_new_signed_revision_is_loaded_and_handed_to_the_workers(served: Served, tmp_path: Path) -> None:
    from pdp.api.workers import BundleFileWatcher
    from pdp.engine.wasm import WasmBundle

    engine = ReloadableWasmEngine()
    state = tmp_path / "verified.tar.gz"
    follower = _follower(served, engine, state)
    worker = ReloadableWasmEngine.from_file(state)  # what a worker process does at start
    assert not worker.loaded
    watcher = BundleFileWatcher(
        state, lambda p: worker.replace(WasmBundle.from_tarball(p)), interval=0.05
    ).start()
    try:
        served.publish(_wasm(served.first))
        assert follower.poll()
        _wait(lambda: worker.revision == served.first.revision)
        served.publish(_wasm(served.second))
        assert follower.poll()
        assert engine.revision == served.second.revision
        _wait(lambda: worker.revision == served.second.revision)
    finally:
        watcher.stop()
    follower.stop()


def test_the_follower_thread_loads_the_first_bundle(served: Served, tmp_path: Path) -> None:
    engine = ReloadableWasmEngine()
    follower = _follower(served, engine, tmp_path / "v.tar.gz").start()
    try:
        shutil.copyfile(served.first.wasm_path or "", served.folder / CURRENT_WASM_BUNDLE)
        _wait(lambda: engine.loaded)
    finally:
        follower.stop()


def _wait(predicate: object, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
