"""Before any server is timed, every body goes to every server and their verdicts must agree: a
peer that answers an error fast (Gatekeeper without the tenant's namespace answered every review
`allowed: false` with code 500 and evaluated no policy) is not measured."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


class VerdictError(RuntimeError):
    """The servers disagree on a body, or one answered it with an error: the run stops."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    code: int  # the AdmissionReview's status code (200 when allowed without one)
    message: str


def verdict(url: str, body: bytes, *, timeout: float = 10.0) -> Verdict:
    """One AdmissionReview answered by the webhook at `url`; VerdictError when the answer is not
    a review (an HTTP error status, no `response`) or the review reports an error (5xx code)."""
    parts = urlsplit(url)
    context = ssl._create_unverified_context()  # each server's own bench serving certificate
    conn = http.client.HTTPSConnection(
        parts.hostname or "", parts.port or 443, context=context, timeout=timeout
    )
    try:
        conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body, _HEADERS)
        response = conn.getresponse()
        text = response.read()
    except OSError as exc:
        raise VerdictError(f"{url}: no answer ({exc})") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise VerdictError(f"{url}: HTTP {response.status}: {text[:300]!r}")
    try:
        answer = json.loads(text)["response"]
        allowed = answer["allowed"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerdictError(f"{url}: not an AdmissionReview answer: {text[:300]!r}") from exc
    status = answer.get("status") or {}
    code = int(status.get("code") or 200)
    if code >= 500:
        raise VerdictError(f"{url}: an error answered as a verdict: code {code}, {status.get('message')!r}")
    return Verdict(bool(allowed), code, str(status.get("message") or ""))


def bench_bodies() -> tuple[dict[str, bytes], dict[str, bool]]:
    """The bench's pod (allowed by both) and the EU tenant's pod pinned to a US region (denied),
    with the verdict each must get."""
    from bench.gatekeeper import CASES, admission_review
    from bench.inputs import admission_review as bench_review

    denied_pod, denied = CASES["eu-tenant-us-region"]
    assert denied
    found = {"allowed": bench_review(), "denied": json.dumps(admission_review(denied_pod)).encode()}
    return found, {"allowed": True, "denied": False}


def agree(
    servers: dict[str, str], bodies: dict[str, bytes], expected: dict[str, bool]
) -> dict[str, dict[str, Verdict]]:
    """Every body to every server (name -> URL); each verdict must be the body's `expected`
    allowed/denied, so the servers agree with each other and with the case. Returns the verdicts
    by body, then server."""
    verdicts: dict[str, dict[str, Verdict]] = {}
    for body_name, body in bodies.items():
        verdicts[body_name] = {name: verdict(url, body) for name, url in servers.items()}
        wrong = {n: v for n, v in verdicts[body_name].items() if v.allowed != expected[body_name]}
        if wrong:
            said = "; ".join(
                f"{n}: allowed={v.allowed} code {v.code} {v.message!r}" for n, v in wrong.items()
            )
            want = "allowed" if expected[body_name] else "denied"
            raise VerdictError(f"body {body_name!r} should be {want}: {said}")
    return verdicts


_HEADERS = {"Content-Type": "application/json"}
