"""The certificate of destruction is signed (Ed25519, the worker's own key) and verifiable by
anyone with the public key: through the API and `pdp lifecycle certificate-verify`."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.lifecycle.services import certificate
from tests.lifecycle.harness import ROOT, Worker, audit_records, onboard, tenant_doc

DECISION = {"decision_id": "d-1", "bundle_revision": "r-1"}


def _issue(key: Ed25519PrivateKey) -> dict[str, Any]:
    cert = certificate.issue(
        "t", ["Namespace//t-ml"], destroyed_at="2026-01-01T00:00:00+00:00", decision=DECISION,
        workflow_id="offboard-t", key=key,
    )  # fmt: skip
    return {"certificate": json.loads(cert["document"]), **cert}


def issued_records(worker: Worker, event: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return [r for r in audit_records(c.get("/v1/audit").text) if r["event"] == event]


def test_a_certificate_says_whether_anything_was_destroyed() -> None:
    key = Ed25519PrivateKey.generate()
    real = json.loads(_issue(key)["document"])
    assert real["mode"] == "kubernetes" and real["status"] == "destroyed_and_verified_absent"
    assert real["objects_destroyed_and_verified_absent"] == ["Namespace//t-ml"]
    dry = certificate.issue(
        "t", ["Namespace//t-ml"], destroyed_at="2026-01-01T00:00:00+00:00", decision=DECISION,
        workflow_id="offboard-t", key=key, mode="dry-run",
    )  # fmt: skip
    doc = json.loads(dry["document"])
    assert doc["mode"] == "dry-run" and doc["status"] == "would_destroy"
    assert doc["objects_would_be_destroyed"] == ["Namespace//t-ml"]
    assert "objects_destroyed_and_verified_absent" not in doc
    # The signature covers the mode: relabelling a dry run as real breaks it.
    forged = dry["document"].replace('"mode":"dry-run"', '"mode":"kubernetes"')
    assert certificate.verify({**dry, "document": forged}, _pem(key))
    assert certificate.dry_run_note(dry).startswith("DRY RUN")
    assert certificate.dry_run_note(_issue(key)) == ""


def _pem(key: Ed25519PrivateKey) -> str:
    return certificate.public_pem(key.public_key())


def test_a_signed_certificate_verifies_and_one_altered_byte_fails_naming_the_problem() -> None:
    key = Ed25519PrivateKey.generate()
    cert = _issue(key)
    assert cert["signature"]["algorithm"] == "Ed25519"
    assert cert["signature"]["key_id"] == certificate.key_id(key.public_key())
    assert cert["certificate"]["signed_with"] == {
        "algorithm": "Ed25519",
        "key_id": cert["signature"]["key_id"],
    }
    assert certificate.verify(cert, _pem(key)) == []

    # One byte of the signed document (and the hash recomputed, as a forger would).
    import hashlib

    altered = cert["document"].replace("Namespace//t-ml", "Namespace//t-mL")
    forged = {**cert, "document": altered, "certificate": json.loads(altered),
              "sha256": hashlib.sha256(altered.encode()).hexdigest()}  # fmt: skip
    assert certificate.verify(forged, _pem(key)) == [
        "the signature does not verify: the document was altered or signed by another key"
    ]
    assert "the document does not match its sha256 (altered?)" in certificate.verify(
        {**cert, "document": altered, "certificate": json.loads(altered)}, _pem(key)
    )
    shown = {**cert, "certificate": {**cert["certificate"], "tenant": "other"}}
    assert certificate.verify(shown, _pem(key)) == ["the certificate shown differs from the signed document"]

    other = Ed25519PrivateKey.generate()
    problems = certificate.verify(cert, _pem(other))
    assert problems[0].startswith("signed with key") and len(problems) == 2, problems


def test_the_key_is_generated_owner_only_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "certificate-signing-key.pem"
    key = certificate.load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = certificate.load_or_create_key(path)
    assert certificate.key_id(again.public_key()) == certificate.key_id(key.public_key())
    path.chmod(0o644)
    with pytest.raises(certificate.KeyFileError, match="mode 644 lets others read"):
        certificate.load_or_create_key(path)


def _verify_cli(worker: Worker, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "certificate-verify", str(path),
         "--url", worker.url, *extra],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_offboarding_issues_a_certificate_the_cli_verifies(worker: Worker, tmp_path: Path) -> None:
    key_file = worker.root / "state" / "lifecycle" / "certificate-signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = onboard(worker, tenant_doc("globex", "globexc", ["globexc-ml"]))
    with worker.client(token) as c:
        r = c.post("/v1/tenants/globexc/offboard", json={"reason": "contract ended"})
    assert r.status_code == 202, r.text
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "offboarded"
    with worker.client() as c:
        cert = c.get("/v1/tenants/globexc/certificate").json()
    # No token needed for the public key: the offboarded tenant's own token is revoked.
    public = httpx.get(f"{worker.url}/v1/certificates/public-key").json()
    assert public["algorithm"] == "Ed25519" and public["key_id"] == cert["signature"]["key_id"]
    issued = [
        json.loads(line)
        for line in (worker.root / "state" / "lifecycle" / "archive" / "globexc-audit.jsonl")
        .read_text()
        .splitlines()
        if '"certificate.issued"' in line
    ]
    assert [r["detail"]["sha256"] for r in issued] == [cert["sha256"]]

    good = tmp_path / "certificate.json"
    good.write_text(json.dumps(cert))
    out = _verify_cli(worker, good)
    assert out.returncode == 0 and out.stdout.startswith("ok: "), out.stdout + out.stderr
    # The worker runs the dry-run adapter: the signed content says nothing was destroyed, and the
    # verifier says it too.
    assert cert["certificate"]["mode"] == "dry-run" and cert["certificate"]["status"] == "would_destroy"
    assert "objects_destroyed_and_verified_absent" not in cert["certificate"]
    assert "Namespace//globexc-ml" in cert["certificate"]["objects_would_be_destroyed"]
    assert "DRY RUN" in out.stdout and "nothing was destroyed" in out.stdout, out.stdout
    [verified] = [r for r in issued_records(worker, "objects.verified_absent")]
    assert verified["detail"]["mode"] == "dry-run"

    # One byte of the signed document changed in the file.
    text = good.read_text()
    i = text.index("globexc-ml", text.index('"document"'))
    bad = tmp_path / "altered.json"
    bad.write_text(text[:i] + "G" + text[i + 1 :])
    out = _verify_cli(worker, bad)
    assert out.returncode == 1, out.stdout
    assert (
        "FAIL the signature does not verify: the document was altered or signed by another key"
        in out.stdout.splitlines()
    ), out.stdout
    # The right file against another key: refused, naming the key.
    other = tmp_path / "other.pem"
    other.write_text(_pem(Ed25519PrivateKey.generate()))
    out = _verify_cli(worker, good, "--public-key", str(other))
    assert out.returncode == 1 and "FAIL signed with key" in out.stdout, out.stdout
