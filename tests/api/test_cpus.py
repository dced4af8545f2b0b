"""`--webhook-workers auto`: one process per CPU the container may use (pdp/api/cpus.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pdp.api.cpus import UNLIMITED_CAP, usable_cpus, worker_count


def _affinity() -> int:
    return len(os.sched_getaffinity(0))


def test_a_cgroup_v2_limit_is_rounded_up_and_capped_by_the_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert usable_cpus(tmp_path) == min(2, _affinity())
    (tmp_path / "cpu.max").write_text("100000000 100000\n")
    assert usable_cpus(tmp_path) == _affinity()


def test_a_cgroup_v1_limit_counts_too(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert usable_cpus(tmp_path) == 1


def test_without_a_limit_the_cores_up_to_a_cap(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == min(_affinity(), UNLIMITED_CAP)
    assert usable_cpus(tmp_path / "missing") == min(_affinity(), UNLIMITED_CAP)


def test_the_option_takes_a_count_or_auto() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") == usable_cpus()
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError):
            worker_count(bad)
