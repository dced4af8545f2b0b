"""What a verifier trusts, and that it is held outside the state folder it verifies.

The signing key lives with the writer (in its state folder, or wherever --*-signing-key says);
the verifier takes only the public half, from a path given to it, and the checkpoints, from a sink
given to it. Either inside the state folder would let whoever rewrites the records rewrite what
they are checked against, so `verify` refuses that (a worker's self-check may note it instead).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdp.integrity import signing
from pdp.integrity.files import inside
from pdp.integrity.sinks import Sink, SinkError, open_sink, sink_path
from pdp.integrity.verify import Report


class TrustError(Exception):
    pass


@dataclass(frozen=True)
class Trust:
    sink: Sink
    key: Ed25519PublicKey


def misplaced(state: Path, sink: Sink, key_path: Path | None) -> list[str]:
    """What of the trust lies inside the state folder."""
    problems = []
    local = sink_path(sink)
    if local is not None and inside(local, state):
        problems.append(
            f"the checkpoints {sink.location} are inside the state folder {state}: whoever can rewrite "
            "the records can rewrite them too; keep them in a sink outside it"
        )
    if key_path is not None and inside(key_path, state):
        problems.append(
            f"the trusted key {key_path} is inside the state folder {state}: whoever can rewrite the "
            "records can replace it; keep the public key outside it"
        )
    return problems


def load(state: Path, checkpoints: str, trusted_key: Path | None, *, env: str, default: str = "") -> Trust:
    """The verifier's trust from its own configuration (--checkpoints, --trusted-key, or the
    variables ${env}_CHECKPOINTS, ${env}_TRUSTED_KEY; `default`: the writer's default sink for
    `state`, used when it exists); TrustError naming what is missing or misplaced."""
    if not trusted_key:
        raise TrustError(
            f"no trusted key: give --trusted-key PEM (or ${env}_TRUSTED_KEY), the public key held outside "
            "the state folder"
        )
    if not checkpoints:
        local = sink_path(open_sink(default)) if default else None
        if local is None or not local.exists():
            raise TrustError(
                f"no checkpoints: give --checkpoints SINK (or ${env}_CHECKPOINTS), the sink the writer "
                "checkpoints to outside the state folder"
                + (f" (the default, {default}, holds none)" if default else "")
            )
        checkpoints = default
    try:
        sink = open_sink(checkpoints)
        key = signing.load_public_key(trusted_key)
    except (OSError, SinkError, signing.KeyFileError) as exc:
        raise TrustError(str(exc)) from exc
    problems = misplaced(state, sink, trusted_key)
    if problems:
        raise TrustError("; ".join(problems))
    return Trust(sink, key)


def print_report(
    report: Report, *, what: str, sink: Sink, key: Ed25519PublicKey, as_json: bool = False
) -> int:
    """The report as `pdp records verify` and `pdp lifecycle audit-verify` print it (as JSON with
    --json); the exit status."""
    if as_json:
        json.dump(report.as_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if report.ok else 1
    for p in report.problems:
        print(f"FAIL {p}")
    for note in report.notes:
        print(f"note: {note}")
    if report.first_altered is not None:
        print(f"first altered record: {report.first_altered}")
    if report.ok:
        at = (
            f"checkpointed to record {report.checkpointed} in {sink.location}"
            if report.checkpoints
            else f"empty, no checkpoints in {sink.location}"
        )
        print(f"ok: the {what} verifies ({report.chain_end} records; {at}; key {signing.key_id(key)})")
    return 0 if report.ok else 1
