"""The hash chain both record logs share.

Record n's hash is SHA-256 over "n|<hash of record n-1>|<record's canonical bytes>", the first
record linking to GENESIS. Editing, deleting, inserting or reordering a record changes its hash or
breaks the link of the next one; only rewriting every hash from there on (a re-chain) keeps a chain
consistent, which the signed checkpoints (`checkpoints`) then show.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64

# (seq, the record's canonical bytes, the previous record's hash as stored, its hash as stored)
Row = tuple[int, bytes, str, str]


def canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def link(seq: int, prev_hash: str, payload: bytes) -> str:
    return hashlib.sha256(b"%d|%s|%s" % (seq, prev_hash.encode(), payload)).hexdigest()
