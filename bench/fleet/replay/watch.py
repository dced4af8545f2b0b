"""A watch on the API server that lasts the run: what a list function lists in every namespace,
each event handed on, resumed where it dropped."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.watch.watch import iter_resp_lines

from bench.fleet.niceness import lower_this_thread


def watch(
    list_fn: Callable[..., Any],
    apply: Callable[[str, Any], None],
    resource_version: str,
    done: threading.Event,
    log: Callable[[str], None],
) -> None:
    """Each event of what `list_fn` lists, from `resource_version` on, to `apply`, until `done`."""
    lower_this_thread()
    while not done.is_set():
        try:
            # Short watches: the end of the run waits for this thread, which notices the end only
            # at the next event or when the watch times out.
            resp = list_fn(
                watch=True, resource_version=resource_version, timeout_seconds=3, _preload_content=False
            )
            for line in iter_resp_lines(resp):
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    resource_version = ""
                    break
                resource_version = obj["metadata"]["resourceVersion"]
                apply(event["type"], obj)
                if done.is_set():
                    break
            resp.release_conn()
        except Exception as exc:  # a dropped watch is resumed; the replay goes on
            log(f"watch: {exc!r:.200}")
            time.sleep(0.5)
        if not resource_version:
            resource_version = resource_version_of(list_fn(limit=1))


def resource_version_of(listed: Any) -> str:
    """The resourceVersion of a list: a typed one, or a custom objects' dict."""
    if isinstance(listed, dict):
        return str(listed["metadata"]["resourceVersion"])
    return str(listed.metadata.resource_version)
