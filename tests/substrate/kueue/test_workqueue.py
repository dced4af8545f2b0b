"""The controller's work queue: de-duplication, re-processing of keys changed while processed,
delayed keys, and no key ever processed by two workers at once."""

from __future__ import annotations

import threading
import time
from collections import Counter

from pdp.substrate.kueue.informer import WorkQueue


def test_a_waiting_key_is_queued_once() -> None:
    q = WorkQueue()
    for key in ("a", "b", "a", "a"):
        q.add(key)
    assert [q.get(0.1), q.get(0.1), q.get(0.01)] == ["a", "b", None]


def test_a_key_added_while_processed_is_processed_again_after() -> None:
    q = WorkQueue()
    q.add("a")
    assert q.get(0.1) == "a"
    q.add("a")  # changed while being processed
    assert q.get(0.01) is None  # not handed to a second worker meanwhile
    q.done("a")
    assert q.get(0.1) == "a"
    q.done("a")
    assert q.get(0.01) is None


def test_delayed_keys_come_after_their_delay_in_order() -> None:
    q = WorkQueue()
    q.add_after("late", 0.3)
    q.add_after("soon", 0.1)
    started = time.monotonic()
    assert q.get(2) == "soon"
    assert q.get(2) == "late"
    assert time.monotonic() - started >= 0.3


def test_close_wakes_waiting_workers() -> None:
    q = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(q.get(30)))
    worker.start()
    time.sleep(0.05)
    q.close()
    worker.join(2)
    assert not worker.is_alive() and got == [None]


def test_under_concurrent_adds_no_key_runs_twice_at_once_and_no_change_is_lost() -> None:
    q = WorkQueue()
    keys = [f"k{i}" for i in range(8)]
    lock = threading.Lock()
    running: set[str] = set()
    overlaps: list[str] = []
    last_add: dict[str, float] = {}
    last_start: dict[str, float] = {}
    processed: Counter[str] = Counter()
    stop = threading.Event()

    def producer(seed: int) -> None:
        for n in range(400):
            key = keys[(seed * 7 + n) % len(keys)]
            with lock:
                last_add[key] = time.monotonic()
            q.add(key)

    def worker() -> None:
        while not stop.is_set():
            key = q.get(0.05)
            if key is None:
                continue
            with lock:
                if key in running:
                    overlaps.append(key)
                running.add(key)
                last_start[key] = time.monotonic()
            time.sleep(0.0005)
            with lock:
                running.discard(key)
                processed[key] += 1
            q.done(key)

    workers = [threading.Thread(target=worker) for _ in range(4)]
    producers = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
    for t in workers + producers:
        t.start()
    for t in producers:
        t.join()
    deadline = time.monotonic() + 10
    while len(q) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    stop.set()
    for t in workers:
        t.join()
    assert overlaps == []
    # Every key's last change was seen by a processing that started after it.
    assert all(last_start[k] >= last_add[k] for k in keys), (last_start, last_add)
    assert sum(processed.values()) < 1600  # de-duplicated, not one run per add
