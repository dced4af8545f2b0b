"""What the store's parts share: the time format of their rows, and the error for a missing row."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    return datetime.now(UTC).isoformat()


class NotFound(Exception):
    pass
