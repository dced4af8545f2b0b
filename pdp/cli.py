"""`pdp`: validate tenant policy, build signed bundles, serve the PDP, and decide from scripts.

Exit status of `pdp decide` and `pdp check-plan`: 0 ALLOW, 1 DENY, 3 NEEDS_APPROVAL, 2 a malformed
intent (or plan) or usage.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import grpc

from pdp.api.http_cli import add_http_options, http_address, start_http
from pdp.bundles.build import CURRENT_WASM_BUNDLE, build_bundle
from pdp.bundles.server import BundleServer
from pdp.bundles.signing import ensure_keypair, generate_keypair
from pdp.config import ConfigErrors, load_config
from pdp.embedded import EmbeddedPDP, opa_ready
from pdp.enforcement.launch import add_webhook_options, cluster_view, start_enforcement, start_webhook
from pdp.enforcement.servingcert import CertificateError, ServingCertificate
from pdp.engine.opa_http import OpaHttpEngine
from pdp.intents import InvalidIntent
from pdp.lifecycle.cli import add_parser as add_lifecycle_parser
from pdp.listen import (
    ListenError,
    add_insecure_option,
    add_tls_options,
    check_plaintext,
    split_host_port,
    tls_files,
)
from pdp.metrics_http import add_metrics_options, check_metrics_options, start_metrics
from pdp.opa.binary import PROJECT_ROOT, OpaCommandFailed, OpaNotFound
from pdp.opa.cli import add_parser as add_opa_parser
from pdp.opa.status import bundle_refusal
from pdp.options import (
    configure_logging,
    embedded_settings,
    records_argv,
    records_integrity,
    warn_unprotected_records,
    with_config,
    with_records,
)
from pdp.point import DecisionPoint
from pdp.records import DecisionLog
from pdp.records_cli import add_parser as add_records_parser
from pdp.records_postgres import RecordsStoreError
from pdp.status_cli import add_parser as add_status_parser
from pdp.substrate.kueue.cli import add_parser as add_kueue_parser
from pdp.substrate.slurm.cli import add_parser as add_slurm_parser

EXIT_STATUS = {"ALLOW": 0, "DENY": 1, "NEEDS_APPROVAL": 3}
EXIT_USAGE = 2


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.tenants, args.fleet)
    # A throwaway build runs the policies' own contradiction checks without publishing anything.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        build_bundle(config, policies=args.policies, out_dir=Path(tmp), signing_key=None)
    print(f"ok: {len(config.tenants)} tenants and fleet {config.fleet['name']!r} are valid")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    config = load_config(args.tenants, args.fleet)
    key = args.signing_key or ensure_keypair(args.keys).private_key
    bundle = build_bundle(
        config, policies=args.policies, out_dir=args.bundles, signing_key=key, wasm=args.engine == "wasm"
    )
    built = {"revision": bundle.revision, "bundle": str(bundle.path), "signed": bundle.signed}
    if bundle.wasm_path is not None:
        built["wasm_bundle"] = str(bundle.wasm_path)
    _print_json(built)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    pair = generate_keypair(args.keys)
    _print_json({"private_key": str(pair.private_key), "public_key": str(pair.public_key)})
    return 0


def _stop_on_signals() -> threading.Event:
    """An event SIGINT/SIGTERM set. Installed before anything starts: a signal that arrives while
    the servers come up ends them cleanly once they are up, instead of killing the process."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _serve_until_signal(server: Any, stop: threading.Event, *, parent: int | None = None) -> None:
    """Serve until `stop` is set (or, for a worker, until its parent is gone)."""
    while not stop.wait(1.0):
        if parent is not None and os.getppid() != parent:
            break
    server.stop()


def _tls(args: argparse.Namespace) -> tuple[bytes, bytes] | None:
    files = tls_files(args.tls_cert, args.tls_key, "--tls-cert", "--tls-key")
    check_plaintext(
        "--listen", args.listen, tls=files, insecure=args.insecure, carries="intents and decisions"
    )
    return (files.cert.read_bytes(), files.key.read_bytes()) if files else None


def _check_enforcement(args: argparse.Namespace) -> None:
    """Refuse bad enforcement options before anything starts."""
    if args.webhook_listen:
        split_host_port(args.webhook_listen, "--webhook-listen")
        if not (args.webhook_cert and args.webhook_key):
            raise ListenError(
                "--webhook-listen needs --webhook-cert and --webhook-key (the API server only calls HTTPS)"
            )
    if args.extender_listen:
        check_plaintext(
            "--extender-listen",
            args.extender_listen,
            tls=tls_files(args.extender_cert, args.extender_key, "--extender-cert", "--extender-key"),
            insecure=args.insecure,
            tls_options="--extender-cert and --extender-key",
            carries="pods and node names",
        )


class _Servers:
    """Stops what was started, last started first."""

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def add(self, part: Any) -> Any:
        if part is not None:  # an optional part that was not asked for
            self.parts.append(part)
        return part

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()


def _start_workers(args: argparse.Namespace, servers: _Servers, listen: str, **engine: Any) -> None:
    """`--workers N`: N-1 more processes serving the same gRPC port (pdp/api/workers.py)."""
    if args.workers <= 1:
        return
    from pdp.api.workers import WorkerProcesses, WorkerSpec

    spec = WorkerSpec(
        listen=listen, tls_cert=args.tls_cert, tls_key=args.tls_key, records=records_argv(args), **engine
    )
    workers = servers.add(WorkerProcesses(spec, args.workers - 1).start())
    print(f"{args.workers - 1} more PDP worker processes on {listen}: {workers.pids()}", flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from pdp.api.server import PdpServer

    stop = _stop_on_signals()
    # Our own INFO records (certificate reloads, sidecar restarts) reach stderr; libraries'
    # per-request INFO lines (httpx) do not. First, so a plaintext listener's warning shows too.
    configure_logging()
    tls = _tls(args)
    _check_enforcement(args)
    http_address(args)
    check_metrics_options(args)
    if args.workers < 1 or args.webhook_workers < 1:
        raise SystemExit(f"--workers {args.workers}, --webhook-workers {args.webhook_workers}: at least 1")
    warn_unprotected_records(args, logging.getLogger("pdp.records"))
    servers = _Servers()
    if args.opa_addr:
        # Production: OPA runs as a sidecar we do not manage and pulls bundles itself.
        engine = OpaHttpEngine(args.opa_addr)
        log_path = args.state / "decisions.sqlite"
        point = DecisionPoint(engine, DecisionLog(log_path, records_integrity(args)))
        server = servers.add(
            PdpServer(
                point,
                listen=args.listen,
                tls=tls,
                engine_ready=lambda: opa_ready(args.opa_addr),
                bundle_refusal=lambda: bundle_refusal(args.opa_addr),
                health_listen=args.health_listen,
            ).start()
        )
        try:
            _start_workers(args, servers, server.address, opa_addr=args.opa_addr, decision_log=log_path)
            start_enforcement(args, point, servers, engine={"opa_addr": args.opa_addr}, decision_log=log_path)
            servers.add(start_http(args, point, lambda: opa_ready(args.opa_addr)))
            servers.add(start_metrics(args))
        except BaseException:
            servers.stop()
            raise
        print(f"pdp serving on {server.address} (OPA at {args.opa_addr})", flush=True)
        _serve_until_signal(servers, stop)
        return 0
    with EmbeddedPDP(embedded_settings(args)) as stack:
        server = servers.add(
            PdpServer(
                stack.point,
                listen=args.listen,
                tls=tls,
                engine_ready=stack.engine_ready,
                bundle_refusal=stack.bundle_refusal,
                health_listen=args.health_listen,
            ).start()
        )
        try:
            if stack.settings.engine == "wasm":
                current = stack.settings.bundles / CURRENT_WASM_BUNDLE
                # `pdp build` into the same folder publishes a new revision: load it, as OPA does.
                servers.add(_watch_wasm_bundle(stack.engine, current))
                source: dict[str, Any] = {"wasm_bundle": current}
            else:
                source = {"opa_addr": stack.sidecar.addr if stack.sidecar else ""}
            _start_workers(args, servers, server.address, decision_log=stack.settings.decision_log, **source)
            start_enforcement(
                args, stack.point, servers, engine=source, decision_log=stack.settings.decision_log
            )
            servers.add(start_http(args, stack.point, stack.engine_ready))
            servers.add(start_metrics(args))
        except BaseException:
            servers.stop()
            raise
        revision = stack.bundle.revision if stack.bundle else "?"
        engine_name = stack.settings.engine
        print(f"pdp serving on {server.address} (embedded {engine_name}, bundle {revision})", flush=True)
        _serve_until_signal(servers, stop)
    return 0


def _watch_wasm_bundle(engine: Any, path: Path) -> Any:
    from pdp.api.workers import BundleFileWatcher
    from pdp.engine.wasm import WasmBundle

    return BundleFileWatcher(path, lambda p: engine.replace(WasmBundle.from_tarball(p))).start()


def cmd_serve_worker(args: argparse.Namespace) -> int:
    """One extra process of `pdp serve --workers N` (started by it, not by hand)."""
    from pdp.api.server import PdpServer

    stop = _stop_on_signals()
    parent = os.getppid()
    servers = _Servers()
    tls = (args.tls_cert.read_bytes(), args.tls_key.read_bytes()) if args.tls_cert and args.tls_key else None
    engine: Any
    refusal = None
    if args.wasm_bundle:
        from pdp.engine.wasm import WasmEngine

        engine = WasmEngine.from_tarball(args.wasm_bundle)
        servers.add(_watch_wasm_bundle(engine, args.wasm_bundle))

        def ready() -> bool:
            return True
    else:
        engine = OpaHttpEngine(args.opa_addr)

        def ready() -> bool:
            return opa_ready(args.opa_addr)

        refusal = functools.partial(bundle_refusal, args.opa_addr)

    log = DecisionLog(args.decision_log, records_integrity(args)) if args.decision_log else None
    point = DecisionPoint(engine, log)
    if args.listen:
        servers.add(
            PdpServer(point, listen=args.listen, tls=tls, engine_ready=ready, bundle_refusal=refusal).start()
        )
    if args.webhook_listen:
        start_webhook(args, point, servers, cluster_view(args, servers), reuse_port=True)
    _serve_until_signal(servers, stop, parent=parent)
    engine.close()
    if log is not None:
        log.close()
    return 0


def cmd_serve_bundles(args: argparse.Namespace) -> int:
    stop = _stop_on_signals()
    configure_logging()
    files = tls_files(args.tls_cert, args.tls_key, "--tls-cert", "--tls-key")
    host, port = check_plaintext(
        "--listen", args.listen, tls=files, insecure=args.insecure, carries="bundles (tenant data)"
    )
    tls = ServingCertificate(files.cert, files.key) if files else None
    server = BundleServer(args.bundles, host, port, tls=tls).start()
    print(f"serving bundles from {args.bundles} at {server.url}", flush=True)
    _serve_until_signal(server, stop)
    return 0


def _read_intent(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidIntent("(document)", f"is not valid JSON: {exc}") from exc


def cmd_decide(args: argparse.Namespace) -> int:
    return _decide_and_print(args, _read_intent(args.intent))


def cmd_check_plan(args: argparse.Namespace) -> int:
    """The GPU capacity changes of a `tofu show -json` plan, decided as one change_capacity intent."""
    from pdp.substrate.terraform.plan import PlanError, intent_from_plan

    text = sys.stdin.read() if args.plan == "-" else Path(args.plan).read_text()
    try:
        intent = intent_from_plan(json.loads(text), actor=args.actor)
    except (json.JSONDecodeError, PlanError) as exc:
        print(f"invalid plan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _decide_and_print(args, intent)


def _decide_and_print(args: argparse.Namespace, intent: Any) -> int:
    if args.server:
        from pdp.client import PdpClient

        with PdpClient(args.server, timeout=args.timeout) as client:
            try:
                decision = client.decide(intent)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidIntent("intent", exc.details() or "invalid") from exc
                raise
    elif args.engine == "opa":
        with EmbeddedPDP(embedded_settings(args)) as stack:
            decision = stack.point.decide(intent).to_dict()
        print(
            f"decided by OPA (embedded sidecar), bundle {stack.bundle.revision if stack.bundle else '?'}",
            file=sys.stderr,
        )
    else:
        from pdp.oneshot import decide_once

        answer = decide_once(embedded_settings(args), intent)
        decision = answer.decision
        built = "cached build" if answer.cached else "built now"
        print(f"decided in-process by the wasm engine, bundle {answer.revision} ({built})", file=sys.stderr)
    _print_json(decision)
    return EXIT_STATUS.get(decision["outcome"], 1)


def cmd_demo(args: argparse.Namespace) -> int:
    """Bring up OPA and the PDP on the examples, send every example intent over gRPC, print."""
    from pdp.api.server import PdpServer
    from pdp.client import PdpClient

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
                        _print_json(decision)
                        print()
                    codes = ",".join(r["code"] for r in decision.get("reasons", [])) or "-"
                    print(f"{path.name:42} {decision['outcome']:15} {codes}")
        finally:
            server.stop()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pdp", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = p.add_subparsers(dest="command", required=True)

    with_config(sub.add_parser("validate", help="check tenant and fleet documents")).set_defaults(
        func=cmd_validate
    )
    b = with_config(sub.add_parser("build", help="build and sign the bundle"))
    b.add_argument("--signing-key", type=Path, help="PEM private key (default: .keys/)")
    b.set_defaults(func=cmd_build)
    k = sub.add_parser("keygen", help="make a new bundle signing key pair")
    k.add_argument("--keys", type=Path, default=PROJECT_ROOT / ".keys")
    k.set_defaults(func=cmd_keygen)
    s = with_records(with_config(sub.add_parser("serve", help="serve the gRPC PDP")))
    s.add_argument("--listen", default="127.0.0.1:50051")
    s.add_argument("--opa-addr", help="use an OPA sidecar at this address instead of launching one")
    s.add_argument(
        "--sidecar-addr",
        help="where the embedded OPA listens (default: a unix socket under --state); e.g. 127.0.0.1:8181",
    )
    s.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve gRPC over TLS")
    s.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    # --plaintext: its earlier name, when it covered gRPC only
    add_insecure_option(s, "--plaintext")
    add_webhook_options(s)
    s.add_argument(
        "--webhook-workers",
        type=int,
        default=1,
        help="admission webhook processes sharing --webhook-listen (one Python process decides on one core)",
    )
    s.add_argument("--extender-listen", metavar="HOST:PORT", help="serve the kube-scheduler extender")
    s.add_argument("--extender-cert", type=Path, help="PEM certificate chain: serve the extender over HTTPS")
    s.add_argument("--extender-key", type=Path, help="PEM private key of the extender")
    s.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        help="also serve grpc.health.v1 alone, in plaintext, here (for kubelet gRPC probes, which "
        "cannot speak TLS); it carries no decisions",
    )
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gRPC server processes sharing --listen (one Python process decides on one core)",
    )
    add_http_options(s)
    add_metrics_options(s)
    s.set_defaults(func=cmd_serve)
    w = sub.add_parser("serve-worker", help="one extra process of serve --workers (started by serve)")
    w.add_argument("--listen", help="serve gRPC here")
    add_webhook_options(w)
    engine_source = w.add_mutually_exclusive_group(required=True)
    engine_source.add_argument("--opa-addr")
    engine_source.add_argument("--wasm-bundle", type=Path)
    with_records(w).add_argument("--decision-log", type=Path)
    w.add_argument("--tls-cert", type=Path)
    w.add_argument("--tls-key", type=Path)
    w.set_defaults(func=cmd_serve_worker)
    sb = sub.add_parser("serve-bundles", help="serve built bundles to OPA")
    sb.add_argument("--bundles", type=Path, default=PROJECT_ROOT / "bundles")
    sb.add_argument("--listen", default="127.0.0.1:8282")
    add_tls_options(sb, "bundles")
    sb.set_defaults(func=cmd_serve_bundles)
    d = with_records(
        with_config(
            sub.add_parser("decide", help="decide one intent (JSON file or - for stdin)"),
            engine_default="wasm",
        )
    )
    d.add_argument("intent", nargs="?", default="-")
    d.add_argument("--server", help="ask a running PDP at host:port instead of an embedded one")
    d.add_argument("--timeout", type=float, default=2.0)
    d.set_defaults(func=cmd_decide)
    cp = with_config(
        sub.add_parser("check-plan", help="decide the GPU capacity changes of a tofu/terraform plan")
    )
    cp.add_argument("plan", help="`tofu show -json` output (a file, or - for stdin)")
    cp.add_argument("--server", help="ask a running PDP at host:port instead of an embedded one")
    cp.add_argument("--timeout", type=float, default=2.0)
    cp.add_argument("--actor", default="pdp check-plan", help="who asks (recorded with the decision)")
    cp.set_defaults(func=cmd_check_plan)
    add_records_parser(sub)
    add_status_parser(sub)
    add_opa_parser(sub)
    dm = with_records(
        with_config(sub.add_parser("demo", help="OPA + PDP on the examples, first decisions shown"))
    )
    dm.add_argument("--intents", type=Path, default=PROJECT_ROOT / "examples" / "intents")
    dm.set_defaults(func=cmd_demo)
    add_lifecycle_parser(sub)
    add_slurm_parser(sub)
    add_kueue_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (`pdp decide ... | head`): nothing left to say to it. Python would
        # report the same error again when it flushes stdout at exit, so point stdout elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    except InvalidIntent as exc:
        print(f"invalid intent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OpaNotFound, OpaCommandFailed, CertificateError, RecordsStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
