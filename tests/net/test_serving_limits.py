"""`pdp serve`'s limits of its HTTP fronts (pdp/net/limits.py): out-of-range values refused naming
the option, the values reaching the HTTP decision API, the webhook's worker processes and the
extender (whose connection budget and header deadline are what the options say)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from pdp.cli import parser
from pdp.commands.serve_http import start_http
from pdp.net.limits import DEFAULT_LIMITS, ServingLimits, serving_limits
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender

LIMITS = ["--max-connections", "3", "--header-timeout", "0.3", "--body-timeout", "2", "--idle-timeout", "7"]


class NeverAsked:
    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        raise AssertionError("no decision was needed")


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--max-connections", "0", "0: give a whole number of connections from 1 to 100000"),
        ("--max-connections", "many", "'many' is not a whole number of connections"),
        ("--header-timeout", "0", "0: give a number of seconds from 0.1 to 3600"),
        ("--body-timeout", "-1", "-1: give a number of seconds from 0.1 to 3600"),
        ("--idle-timeout", "1.5", "'1.5' is not a whole number of seconds"),
    ],
)
def test_a_limit_out_of_range_is_refused_naming_the_option(
    option: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["serve", option, value])
    assert exited.value.code == 2
    assert f"argument {option}: {says}" in capsys.readouterr().err


def test_the_limits_reach_every_http_front() -> None:
    args = parser().parse_args(["serve", "--http-listen", "127.0.0.1:0", *LIMITS])
    limits = serving_limits(args)
    assert limits == ServingLimits(3, 0.3, 2.0, 7)
    assert serving_limits(parser().parse_args(["serve"])) == DEFAULT_LIMITS
    # The webhook's worker processes are started with the same options.
    worker = parser().parse_args(["serve-worker", "--opa-addr", "x", *limits.argv()])
    assert serving_limits(worker) == limits

    point = DecisionPoint(NeverAsked())
    # Without --max-connections each front keeps its own budget.
    defaults = parser().parse_args(["serve", "--http-listen", "127.0.0.1:0"])
    for given, cap in ((defaults, 256), (args, 3)):
        api = start_http(given, point, lambda: True)
        assert api is not None
        try:
            assert api.gate.cap == cap
        finally:
            api.stop()
    with ExtenderServer(SchedulerExtender(point), limits=serving_limits(defaults)) as extender:
        assert extender.gate.cap == 128
    with ExtenderServer(SchedulerExtender(point), limits=limits) as extender:
        assert extender.gate.cap == 3
        # A connection that sends nothing is closed when the header deadline passes.
        with socket.create_connection(("127.0.0.1", extender.port), timeout=5) as silent:
            started = time.monotonic()
            assert silent.recv(1) == b""
            assert time.monotonic() - started < 2
