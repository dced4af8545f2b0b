"""Test-only hooks, driven by the environment, so tests can stop or break a workflow at a named
step deterministically. Unset, they do nothing.

PDP_LIFECYCLE_PAUSE_AT=<step>: the step writes PDP_LIFECYCLE_PAUSE_MARKER and blocks, so a test
can kill the worker there. PDP_LIFECYCLE_FAIL_AT=<step>: the step fails every attempt.
PDP_LIFECYCLE_UNREACHABLE_ONCE=1: every call a workflow makes to a cluster finds it unreachable
once, so each call's pause and resumption are in the audit trail.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class InjectedFailure(Exception):
    pass


# The calls already refused (their pause key: event key, cluster, operation).
_REFUSED: set[tuple[str, str, str]] = set()


def cluster_call(token: tuple[str, str, str]) -> None:
    if os.environ.get("PDP_LIFECYCLE_UNREACHABLE_ONCE") and token not in _REFUSED:
        _REFUSED.add(token)
        raise ConnectionError("injected: the cluster is unreachable (once per call)")


def at_step(step: str) -> None:
    if os.environ.get("PDP_LIFECYCLE_FAIL_AT") == step:
        raise InjectedFailure(f"injected failure at step {step}")
    if os.environ.get("PDP_LIFECYCLE_PAUSE_AT") == step:
        marker = os.environ.get("PDP_LIFECYCLE_PAUSE_MARKER")
        if marker:
            Path(marker).write_text(step)
        while True:  # until the test kills the process
            time.sleep(3600)
