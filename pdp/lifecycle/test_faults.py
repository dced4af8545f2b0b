"""Test-only hooks, driven by the environment, so tests can stop or break a workflow at a named
step deterministically. Unset, they do nothing.

PDP_LIFECYCLE_PAUSE_AT=<step>: the step writes PDP_LIFECYCLE_PAUSE_MARKER and blocks, so a test
can kill the worker there. PDP_LIFECYCLE_FAIL_AT=<step>: the step fails every attempt.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class InjectedFailure(Exception):
    pass


def at_step(step: str) -> None:
    if os.environ.get("PDP_LIFECYCLE_FAIL_AT") == step:
        raise InjectedFailure(f"injected failure at step {step}")
    if os.environ.get("PDP_LIFECYCLE_PAUSE_AT") == step:
        marker = os.environ.get("PDP_LIFECYCLE_PAUSE_MARKER")
        if marker:
            Path(marker).write_text(step)
        while True:  # until the test kills the process
            time.sleep(3600)
