"""The command line builds: every subcommand's options are distinct (a duplicated option makes
argparse fail before any command runs, `pdp --help` included)."""

from __future__ import annotations

from pdp.cli import parser


def test_the_parser_builds_and_serve_takes_insecure_once() -> None:
    args = parser().parse_args(["serve", "--listen", "127.0.0.1:0", "--opa-addr", "x", "--insecure"])
    assert args.insecure is True
