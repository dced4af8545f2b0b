"""Searching the decision log by decision id, tenant, outcome, reason code and time, newest first:
in the SQLite log, and in central PostgreSQL records when PDP_TEST_POSTGRES_URL names a server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pdp.decision import Outcome
from pdp.records.log import DecisionLog, Integrity
from pdp.records.search import Search, search
from tests.records.test_records import T0, _decision


def _fill(log: DecisionLog) -> None:
    # d0..d8: tenants a, b, c in turn; outcomes ALLOW, DENY (RESIDENCY_VIOLATION), NEEDS_APPROVAL in turn.
    outcomes = (Outcome.ALLOW, Outcome.DENY, Outcome.NEEDS_APPROVAL)
    for n in range(9):
        log.append(_decision(n, "abc"[n % 3], T0 + timedelta(minutes=n), outcomes[(n // 3 + n) % 3]), f"s{n}")


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionLog]:
    if request.param == "sqlite":
        opened = DecisionLog(tmp_path / "decisions.sqlite")
    else:
        database = request.getfixturevalue("pg_url")
        opened = DecisionLog(tmp_path / "decisions.sqlite", Integrity(url=database, writer="search-test"))
    _fill(opened)
    yield opened
    opened.close()


def ids(log: DecisionLog, **filters: object) -> list[str]:
    return [r.decision_id for r in search(log, Search(**filters))]  # type: ignore[arg-type]


def test_every_filter_and_their_combination(log: DecisionLog) -> None:
    assert ids(log) == [f"d{n}" for n in range(8, -1, -1)]  # newest first
    assert ids(log, decision_id="d4") == ["d4"]
    assert ids(log, decision_id="d4", tenant="a") == []  # d4 is tenant b's
    assert ids(log, tenant="a") == ["d6", "d3", "d0"]
    outcomes = {r.decision_id: r.outcome for r in search(log, Search())}
    denied = [d for d in ids(log) if outcomes[d] == "DENY"]
    assert denied and ids(log, outcome="DENY") == denied
    # Every decision that is not ALLOW carries RESIDENCY_VIOLATION (tests/records/test_records.py).
    assert ids(log, reason="RESIDENCY_VIOLATION") == [d for d in ids(log) if outcomes[d] != "ALLOW"]
    assert ids(log, reason="NO_SUCH_CODE") == []
    assert ids(log, since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5)) == ["d4", "d3", "d2"]
    assert ids(log, tenant="b", since=T0 + timedelta(minutes=2)) == ["d7", "d4"]
    assert ids(log, limit=2) == ["d8", "d7"]


def test_filter_values_are_parameters_not_sql(log: DecisionLog) -> None:
    assert ids(log, tenant="a' OR '1'='1") == []
    assert ids(log, reason="X') OR 1=1 --") == []
    assert ids(log, decision_id="d1' OR 'x'='x") == []


def test_bad_filters_name_the_field() -> None:
    with pytest.raises(ValueError, match="outcome: 'MAYBE'"):
        Search(outcome="MAYBE")
    with pytest.raises(ValueError, match=r"since: .* has no time zone"):
        Search(since=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="limit: 0"):
        Search(limit=0)
