"""The wasm engine's instance pool (pdp/engine/instance_pool.py): the most recent instance first,
a caller finding none waits for one to come back, and gets None when none does in time."""

from __future__ import annotations

import threading
import time

from pdp.engine.instance_pool import InstancePool


def test_the_most_recently_returned_instance_is_handed_out_first() -> None:
    pool: InstancePool[str] = InstancePool()
    for name in ("a", "b", "c"):
        pool.put(name)
    assert [pool.get(0.0), pool.get(0.0), pool.get(0.0)] == ["c", "b", "a"]


def test_an_empty_pool_gives_none_after_the_timeout() -> None:
    pool: InstancePool[str] = InstancePool()
    started = time.monotonic()
    assert pool.get(0.05) is None
    assert time.monotonic() - started >= 0.05


def test_a_waiting_caller_gets_the_instance_put_back() -> None:
    pool: InstancePool[str] = InstancePool()
    got: list[str | None] = []
    waiters = [threading.Thread(target=lambda: got.append(pool.get(5.0))) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.05)  # all three waiting
    for name in ("a", "b", "c"):
        pool.put(name)
    for waiter in waiters:
        waiter.join(timeout=5)
    assert sorted(g for g in got if g is not None) == ["a", "b", "c"]
    assert pool.idle == []


def test_no_instance_is_handed_to_two_callers_at_once() -> None:
    # Two instances, eight threads taking and returning them as fast as they can: a lost wake-up
    # shows as a caller timing out (None), a double hand-out as an instance seen in use twice.
    pool: InstancePool[int] = InstancePool()
    for item in (1, 2):
        pool.put(item)
    in_use: set[int] = set()
    guard = threading.Lock()
    problems: list[str] = []

    def churn() -> None:
        for _ in range(2000):
            item = pool.get(5.0)
            if item is None:
                problems.append("no instance within 5 s")
                return
            with guard:
                if item in in_use:
                    problems.append(f"instance {item} handed out twice")
                in_use.add(item)
            with guard:
                in_use.discard(item)
            pool.put(item)

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert problems == []
    assert sorted(pool.idle) == [1, 2]
