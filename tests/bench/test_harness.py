"""The bench's reading of hypervisor steal from /proc/stat."""

from __future__ import annotations

import pytest

from bench.harness import steal_and_total

STAT = """cpu  4705 356 584 3699 23 0 14 91 12 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 45 0 0
intr 114930548 113199788 3 0 5 263 0 0 0 1 0
"""


def test_steal_is_the_eighth_field_of_the_cpu_line_and_guest_time_is_not_counted_twice() -> None:
    # user..steal sum to 9,472; guest (12) is inside user already.
    assert steal_and_total(STAT) == (91, 4705 + 356 + 584 + 3699 + 23 + 0 + 14 + 91)


def test_a_stat_without_a_cpu_line_is_refused() -> None:
    with pytest.raises(ValueError, match="no cpu line"):
        steal_and_total("intr 1 2 3\n")
