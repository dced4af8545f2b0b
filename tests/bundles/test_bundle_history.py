"""The bundle revisions a PDP activated: appended owner-only, a restart on the same revision is no
new line, a line removed or edited in the middle is named, and concurrent writers keep the chain."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

from pdp.bundles.history import RevisionHistory, file_digest, signer_of
from pdp.bundles.signing import generate_keypair
from pdp.embedded import EmbeddedPDP
from tests.conftest import embedded_settings


def test_activations_are_appended_owner_only_and_chained(tmp_path: Path) -> None:
    keys = generate_keypair(tmp_path / "keys")
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(b"bundle one")
    history = RevisionHistory.of_state(tmp_path / "state")
    first = history.record("r1", bundle=bundle, public_key=keys.public_key, engine="opa")
    assert first is not None and first["digest"] == file_digest(bundle)
    assert first["signer"] == signer_of(keys.public_key) and first["signer"].startswith("sha256:")
    assert history.record("r1", bundle=bundle, public_key=keys.public_key, engine="opa") is None
    history.record("r2", bundle=None, public_key=None, engine="wasm")
    # A rollback to r1 is an activation too.
    history.record("r1", bundle=bundle, public_key=keys.public_key, engine="opa")
    assert [e["revision"] for e in history.entries()] == ["r1", "r2", "r1"]
    assert history.active() is not None and history.active()["revision"] == "r1"  # type: ignore[index]
    assert stat.S_IMODE(history.path.stat().st_mode) == 0o600
    assert history.verify().ok


def test_a_removed_or_edited_line_is_named(tmp_path: Path) -> None:
    history = RevisionHistory(tmp_path / "h.jsonl")
    for revision in ("r1", "r2", "r3"):
        history.record(revision, bundle=None, public_key=None, engine="opa")
    lines = history.path.read_text().splitlines()
    history.path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    check = history.verify()
    assert not check.ok and "line 2 (r3)" in check.problems[0]
    edited = json.loads(lines[1]) | {"signer": "sha256:someone-else"}
    history.path.write_text("\n".join([lines[0], json.dumps(edited, sort_keys=True), lines[2]]) + "\n")
    assert "line 3 (r3)" in history.verify().problems[0]


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    history = RevisionHistory(tmp_path / "h.jsonl")

    def write(worker: int) -> None:
        for n in range(20):
            RevisionHistory(history.path).record(f"w{worker}-{n}", bundle=None, public_key=None, engine="opa")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(history.entries()) == 80
    assert history.verify().ok


def test_the_embedded_pdp_records_what_it_activates(workspace: Path, opa_binary: Path) -> None:
    settings = embedded_settings(workspace, engine="wasm")
    with EmbeddedPDP(settings) as stack:
        assert stack.bundle is not None
        first = stack.bundle.revision
        tenant = workspace / "examples" / "tenants" / "globex.yaml"
        tenant.write_text(tenant.read_text().replace("H100-80GB: 8", "H100-80GB: 9", 1))
        second = stack.build().revision
        entries = stack.history.entries()
    assert first != second, "the edit must change the bundle"
    assert [e["revision"] for e in entries] == [first, second]
    assert entries[-1]["signer"] == signer_of(stack.keys.public_key)
    assert entries[-1]["digest"] == file_digest(settings.bundles / f"gpupaas-{second}.tar.gz")
