"""`pdp decide`, `pdp check-plan`, `pdp demo`: decisions from a terminal or a script.

The one-shot path (`pdp decide FILE`, the wasm engine, a warm cache) imports no gRPC, HTTP client,
web framework or PostgreSQL driver: tests/commands/test_cli_imports.py holds it to that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pdp.commands.output import EXIT_STATUS, EXIT_USAGE, print_json
from pdp.intents import InvalidIntent
from pdp.opa.binary import PROJECT_ROOT
from pdp.options import embedded_settings, with_config, with_records


def _read_intent(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidIntent("(document)", f"is not valid JSON: {exc}") from exc


def cmd_decide(args: argparse.Namespace) -> int:
    return decide_and_print(args, _read_intent(args.intent))


def cmd_check_plan(args: argparse.Namespace) -> int:
    """The GPU capacity changes of a `tofu show -json` plan, decided as one change_capacity intent."""
    from pdp.substrate.terraform.plan import PlanError, intent_from_plan

    text = sys.stdin.read() if args.plan == "-" else Path(args.plan).read_text()
    try:
        intent = intent_from_plan(json.loads(text), actor=args.actor)
    except (json.JSONDecodeError, PlanError) as exc:
        print(f"invalid plan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return decide_and_print(args, intent)


class ServerFailed(Exception):
    """The PDP asked with --server did not answer (unreachable, timed out, failed)."""


def _ask_server(args: argparse.Namespace, intent: Any) -> dict[str, Any]:
    import grpc

    from pdp.api.client import PdpClient

    with PdpClient(args.server, timeout=args.timeout, token_file=args.token_file) as client:
        try:
            return client.decide(intent)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidIntent("intent", exc.details() or "invalid") from exc
            raise ServerFailed(
                f"--server {args.server}: {exc.code().name}: {exc.details() or 'no answer'}"
            ) from exc


def decide(args: argparse.Namespace, intent: Any) -> dict[str, Any]:
    """The decision document, from where the options say; which engine and revision decided on
    stderr."""
    if args.server:
        return _ask_server(args, intent)
    if args.engine == "opa":
        from pdp.embedded import EmbeddedPDP

        with EmbeddedPDP(embedded_settings(args)) as stack:
            decision = stack.point.decide(intent).to_dict()
        revision = stack.bundle.revision if stack.bundle else "?"
        print(f"decided by OPA (embedded sidecar), bundle {revision}", file=sys.stderr)
        return decision
    from pdp.oneshot import decide_once

    answer = decide_once(embedded_settings(args), intent)
    built = "cached build" if answer.cached else "built now"
    print(f"decided in-process by the wasm engine, bundle {answer.revision} ({built})", file=sys.stderr)
    return answer.decision


def decide_and_print(args: argparse.Namespace, intent: Any) -> int:
    decision = decide(args, intent)
    print_json(decision)
    return EXIT_STATUS.get(decision["outcome"], 1)


def cmd_demo(args: argparse.Namespace) -> int:
    """Bring up OPA and the PDP on the examples, send every example intent over gRPC, print."""
    from pdp.api.client import PdpClient
    from pdp.api.server import PdpServer
    from pdp.embedded import EmbeddedPDP

    intents = sorted(args.intents.glob("*.json"))
    with EmbeddedPDP(embedded_settings(args)) as stack:
        server = PdpServer(stack.point, listen="127.0.0.1:0", engine_ready=stack.engine_ready)
        server.start()
        revision = stack.bundle.revision if stack.bundle else "?"
        print(f"OPA {stack.sidecar.addr if stack.sidecar else ''} active bundle {revision}")
        print(f"PDP gRPC on {server.address}\n")
        try:
            with PdpClient(server.address) as client:
                for i, path in enumerate(intents):
                    decision = client.decide(json.loads(path.read_text()))
                    if i == 0:
                        print(f"first decision ({path.name}):")
                        print_json(decision)
                        print()
                    codes = ",".join(r["code"] for r in decision.get("reasons", [])) or "-"
                    print(f"{path.name:42} {decision['outcome']:15} {codes}")
        finally:
            server.stop()
    return 0


def add_parsers(sub: Any) -> None:
    d = with_records(
        with_config(
            sub.add_parser("decide", help="decide one intent (JSON file or - for stdin)"),
            engine_default="wasm",
        )
    )
    d.add_argument("intent", nargs="?", default="-")
    d.add_argument("--server", help="ask a running PDP at host:port instead of an embedded one")
    d.add_argument("--timeout", type=float, default=2.0)
    d.add_argument("--token-file", type=Path, help="file holding the bearer token for --server")
    d.set_defaults(func=cmd_decide)
    cp = with_config(
        sub.add_parser("check-plan", help="decide the GPU capacity changes of a tofu/terraform plan")
    )
    cp.add_argument("plan", help="`tofu show -json` output (a file, or - for stdin)")
    cp.add_argument("--server", help="ask a running PDP at host:port instead of an embedded one")
    cp.add_argument("--timeout", type=float, default=2.0)
    cp.add_argument("--token-file", type=Path, help="file holding the bearer token for --server")
    cp.add_argument("--actor", default="pdp check-plan", help="who asks (recorded with the decision)")
    cp.set_defaults(func=cmd_check_plan)
    dm = with_records(
        with_config(sub.add_parser("demo", help="OPA + PDP on the examples, first decisions shown"))
    )
    dm.add_argument("--intents", type=Path, default=PROJECT_ROOT / "examples" / "intents")
    dm.set_defaults(func=cmd_demo)
