"""`pdp serve`'s options for the limits of its HTTP fronts (the HTTP decision API, the webhook,
the extender: serving/), each front keeping them on its own: the connection budget and the
deadlines of a request's phases. The defaults hold 1,000 idle or slow connections (issue 28);
a value outside its range is refused by argparse, naming the option."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pdp.net.jsonhttp import DEFAULT_KEEP_ALIVE
from pdp.net.serving.protocol import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT


@dataclass(frozen=True)
class ServingLimits:
    max_connections: int | None = None
    """None: each front's own budget (the HTTP API 256, the webhook and the extender 128)."""
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    idle_timeout: int = DEFAULT_KEEP_ALIVE

    def server_options(self) -> dict[str, Any]:
        """As JsonHttpServer and HttpDecisionServer take them."""
        budget = {} if self.max_connections is None else {"max_connections": self.max_connections}
        return {
            **budget,
            "header_timeout": self.header_timeout,
            "body_timeout": self.body_timeout,
            "keep_alive": self.idle_timeout,
        }

    def argv(self) -> list[str]:
        """The options again, for the processes `pdp serve` starts (--webhook-workers)."""
        budget = [] if self.max_connections is None else ["--max-connections", str(self.max_connections)]
        return [
            *budget,
            *("--header-timeout", str(self.header_timeout)),
            *("--body-timeout", str(self.body_timeout)),
            *("--idle-timeout", str(self.idle_timeout)),
        ]


DEFAULT_LIMITS = ServingLimits()


def _bounded(kind: Callable[[str], Any], low: float, high: float, what: str) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text}: give {what} from {low:g} to {high:g}")
        return value

    return read


def add_serving_limit_options(sp: argparse.ArgumentParser) -> None:
    fronts = "each HTTP front's (HTTP API, webhook, extender)"
    sp.add_argument(
        "--max-connections",
        type=_bounded(int, 1, 100_000, "a whole number of connections"),
        help=f"{fronts} open connections; one more evicts the quietest not being answered "
        "(default: the HTTP API 256, the webhook and the extender 128; the webhook on granian 1024, "
        "the ones beyond waiting in the accept queue)",
    )
    seconds = _bounded(float, 0.1, 3600, "a number of seconds")
    sp.add_argument(
        "--header-timeout",
        type=seconds,
        default=DEFAULT_HEADER_TIMEOUT,
        help="seconds a client has for the TLS handshake, request line and headers "
        f"(default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    sp.add_argument(
        "--body-timeout",
        type=seconds,
        default=DEFAULT_BODY_TIMEOUT,
        help="seconds a client has for a request's body, after its headers "
        f"(default {DEFAULT_BODY_TIMEOUT:g})",
    )
    sp.add_argument(
        "--idle-timeout",
        type=_bounded(int, 1, 3600, "a whole number of seconds"),
        default=DEFAULT_KEEP_ALIVE,
        help=f"seconds a keep-alive connection may stay idle between requests (default {DEFAULT_KEEP_ALIVE})",
    )


def serving_limits(args: argparse.Namespace) -> ServingLimits:
    return ServingLimits(args.max_connections, args.header_timeout, args.body_timeout, args.idle_timeout)
