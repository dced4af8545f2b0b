"""`pdp serve` (the gRPC PDP, its enforcement points, HTTP API and metrics) and `pdp serve-worker`
(one more process of `serve --workers N`, started by it)."""

from __future__ import annotations

import argparse
import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdp.commands.running import Servers, serve_until_signal, stop_on_signals
from pdp.net.listen import ListenError, add_insecure_option, check_plaintext, split_host_port, tls_files

if TYPE_CHECKING:
    from pdp.api.token_file import BearerTokens
from pdp.options import (
    configure_logging,
    embedded_settings,
    note_default_checkpoints,
    records_argv,
    records_integrity,
    with_config,
    with_records,
)


def _tls(args: argparse.Namespace) -> tuple[bytes, bytes] | None:
    files = tls_files(args.tls_cert, args.tls_key, "--tls-cert", "--tls-key")
    check_plaintext(
        "--listen", args.listen, tls=files, insecure=args.insecure, carries="intents and decisions"
    )
    if files is None:
        return None
    pair = []
    for option, path in (("--tls-cert", files.cert), ("--tls-key", files.key)):
        try:
            pair.append(path.read_bytes())
        except OSError as exc:
            # An image's default command names files to mount: say which one is missing.
            raise ListenError(f"{option} {path}: {exc.strerror or exc}") from exc
    return pair[0], pair[1]


def _tokens(args: argparse.Namespace) -> BearerTokens | None:
    """--token-file's tokens, refusing gRPC off loopback without them (pdp/api/auth.py)."""
    from pdp.api.auth import require_credentials
    from pdp.api.token_file import BearerTokens, TokenFileError

    try:
        tokens = BearerTokens(args.token_file) if args.token_file else None
    except TokenFileError as exc:
        raise SystemExit(f"--token-file {exc}") from exc
    host, _ = split_host_port(args.listen)
    require_credentials(f"--listen {args.listen}", host, tokens, "--token-file")
    return tokens


def _check_enforcement(args: argparse.Namespace) -> None:
    """Refuse bad enforcement options before anything starts: off loopback the webhook and the
    extender authenticate their caller by client certificate, or are told not to by name."""
    from pdp.net.clientauth import require_client_auth
    from pdp.substrate.kubernetes.enforcement.launch import extender_client_auth, webhook_client_auth

    if args.webhook_listen:
        host, _ = split_host_port(args.webhook_listen, "--webhook-listen")
        if not (args.webhook_cert and args.webhook_key):
            raise ListenError(
                "--webhook-listen needs --webhook-cert and --webhook-key (the API server only calls HTTPS)"
            )
        require_client_auth(
            f"--webhook-listen {args.webhook_listen}",
            host,
            webhook_client_auth(args),
            ca_option="--webhook-client-ca",
            allow_option="--webhook-allow-unauthenticated",
            allowed=args.webhook_allow_unauthenticated,
        )
    if args.extender_listen:
        tls = tls_files(args.extender_cert, args.extender_key, "--extender-cert", "--extender-key")
        host, _ = check_plaintext(
            "--extender-listen",
            args.extender_listen,
            tls=tls,
            insecure=args.insecure,
            tls_options="--extender-cert and --extender-key",
            carries="pods and node names",
        )
        auth = extender_client_auth(args)
        if auth is not None and tls is None:
            raise ListenError(
                "--extender-client-ca needs --extender-cert and --extender-key (client certificates are "
                "part of TLS)"
            )
        require_client_auth(
            f"--extender-listen {args.extender_listen}",
            host,
            auth,
            ca_option="--extender-client-ca",
            allow_option="--extender-allow-unauthenticated",
            allowed=args.extender_allow_unauthenticated,
        )


def _start_workers(args: argparse.Namespace, servers: Servers, listen: str, **engine: Any) -> None:
    """`--workers N`: N-1 more processes serving the same gRPC port (pdp/api/workers.py)."""
    if args.workers <= 1:
        return
    from pdp.api.workers import WorkerProcesses, WorkerSpec

    spec = WorkerSpec(
        listen=listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        token_file=args.token_file,
        records=records_argv(args),
        **engine,
    )
    workers = servers.add(WorkerProcesses(spec, args.workers - 1).start())
    print(f"{args.workers - 1} more PDP worker processes on {listen}: {workers.pids()}", flush=True)


def _serve_sidecar(
    args: argparse.Namespace, tls: tuple[bytes, bytes] | None, tokens: BearerTokens | None, stop: Any
) -> int:
    """Production: the bundles come from the bundle server. Either OPA runs as a sidecar we do not
    manage, pulls them itself and decides (--opa-addr), or this process pulls the signed wasm
    bundle, verifies it and decides in-process (--engine wasm --wasm-bundle-url, serve_wasm.py)."""
    from pdp.api.server import PdpServer
    from pdp.commands.serve_http import start_http
    from pdp.commands.serve_wasm import start_signed_wasm, wanted
    from pdp.embedded import opa_ready
    from pdp.engine.opa_http import OpaHttpEngine
    from pdp.net.metrics_http import start_metrics
    from pdp.opa.status import bundle_refusal
    from pdp.point import DecisionPoint
    from pdp.records.log import DecisionLog
    from pdp.replay.shadow import start_shadow
    from pdp.substrate.kubernetes.enforcement.launch import start_enforcement

    servers = Servers()
    log_path = args.state / "decisions.sqlite"
    engine: Any
    if wanted(args):
        # The decisions are the wasm engine's, from the signed bundle it verified; OPA (when the pod
        # runs one) is not asked: no fallback that could answer from another policy.
        signed = servers.add(start_signed_wasm(args))
        engine, source = signed.engine, signed.source
        ready: Any = lambda: signed.engine.loaded  # noqa: E731
        refusal: Any = signed.follower.refusal
        where = f"wasm bundle {args.wasm_bundle_url}, revision {signed.follower.revision or 'none yet'}"
    else:
        engine = OpaHttpEngine(args.opa_addr)
        source = {"opa_addr": args.opa_addr}
        ready = lambda: opa_ready(args.opa_addr)  # noqa: E731
        refusal = lambda: bundle_refusal(args.opa_addr)  # noqa: E731
        where = f"OPA at {args.opa_addr}"
    point = DecisionPoint(engine, DecisionLog(log_path, records_integrity(args, server=True)))
    servers.add(start_shadow(args, point))
    server = servers.add(
        PdpServer(
            point,
            listen=args.listen,
            tls=tls,
            engine_ready=ready,
            bundle_refusal=refusal,
            health_listen=args.health_listen,
            tokens=tokens,
        ).start()
    )
    try:
        _start_workers(args, servers, server.address, decision_log=log_path, **source)
        start_enforcement(args, point, servers, engine=source, decision_log=log_path)
        servers.add(start_http(args, point, ready))
        servers.add(start_metrics(args))
    except BaseException:
        servers.stop()
        raise
    print(f"pdp serving on {server.address} ({where})", flush=True)
    serve_until_signal(servers, stop)
    return 0


def _serve_embedded(
    args: argparse.Namespace, tls: tuple[bytes, bytes] | None, tokens: BearerTokens | None, stop: Any
) -> int:
    from pdp.api.server import PdpServer
    from pdp.commands.serve_http import start_http
    from pdp.embedded import EmbeddedPDP
    from pdp.net.metrics_http import start_metrics
    from pdp.opa.bundle import CURRENT_WASM_BUNDLE
    from pdp.replay.shadow import start_shadow
    from pdp.substrate.kubernetes.enforcement.launch import start_enforcement

    servers = Servers()
    with EmbeddedPDP(embedded_settings(args, server=True)) as stack:
        servers.add(start_shadow(args, stack.point))
        server = servers.add(
            PdpServer(
                stack.point,
                listen=args.listen,
                tls=tls,
                engine_ready=stack.engine_ready,
                bundle_refusal=stack.bundle_refusal,
                health_listen=args.health_listen,
                tokens=tokens,
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
        serve_until_signal(servers, stop)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pdp.commands.serve_http import http_address
    from pdp.net.metrics_http import check_metrics_options

    stop = stop_on_signals()
    # Our own INFO records (certificate reloads, sidecar restarts) reach stderr; libraries'
    # per-request INFO lines (httpx) do not. First, so a plaintext listener's warning shows too.
    configure_logging()
    tls = _tls(args)
    tokens = _tokens(args)
    _check_enforcement(args)
    http_address(args)
    check_metrics_options(args)
    from pdp.api.cpus import usable_cpus
    from pdp.commands.serve_wasm import wanted

    if args.webhook_workers is None:
        # The fast, deployed configuration uses the pod's CPU; otherwise one process as before.
        args.webhook_workers = usable_cpus() if wanted(args) else 1
    if args.workers < 1 or args.webhook_workers < 1:
        raise SystemExit(f"--workers {args.workers}, --webhook-workers {args.webhook_workers}: at least 1")
    note_default_checkpoints(args, logging.getLogger("pdp.records.log"))
    if args.opa_addr or wanted(args):
        return _serve_sidecar(args, tls, tokens, stop)
    return _serve_embedded(args, tls, tokens, stop)


def _watch_wasm_bundle(engine: Any, path: Path) -> Any:
    from pdp.api.workers import BundleFileWatcher
    from pdp.engine.wasm import WasmBundle

    return BundleFileWatcher(path, lambda p: engine.replace(WasmBundle.from_tarball(p))).start()


def cmd_serve_worker(args: argparse.Namespace) -> int:
    """One extra process of `pdp serve --workers N` (started by it, not by hand)."""
    from pdp.api.server import PdpServer
    from pdp.api.token_file import BearerTokens
    from pdp.embedded import opa_ready
    from pdp.engine.opa_http import OpaHttpEngine
    from pdp.opa.status import bundle_refusal
    from pdp.point import DecisionPoint
    from pdp.records.log import DecisionLog
    from pdp.substrate.kubernetes.enforcement.launch import cluster_view, start_webhook

    stop = stop_on_signals()
    parent = os.getppid()
    servers = Servers()
    tls = (args.tls_cert.read_bytes(), args.tls_key.read_bytes()) if args.tls_cert and args.tls_key else None
    engine: Any
    refusal = None
    if args.wasm_bundle:
        from pdp.engine.wasm_reload import ReloadableWasmEngine

        # Not there yet when the parent has no verified bundle yet: DENY and not ready until it is.
        wasm = ReloadableWasmEngine.from_file(args.wasm_bundle)
        engine = wasm
        servers.add(_watch_wasm_bundle(wasm, args.wasm_bundle))

        def ready() -> bool:
            return wasm.loaded
    else:
        engine = OpaHttpEngine(args.opa_addr)

        def ready() -> bool:
            return opa_ready(args.opa_addr)

        refusal = functools.partial(bundle_refusal, args.opa_addr)

    log = DecisionLog(args.decision_log, records_integrity(args, server=True)) if args.decision_log else None
    point = DecisionPoint(engine, log)
    if args.listen:
        tokens = BearerTokens(args.token_file) if args.token_file else None
        server = PdpServer(
            point, listen=args.listen, tls=tls, engine_ready=ready, bundle_refusal=refusal, tokens=tokens
        )
        servers.add(server.start())
    if args.webhook_listen:
        start_webhook(args, point, servers, cluster_view(args, servers), reuse_port=True)
    serve_until_signal(servers, stop, parent=parent)
    engine.close()
    if log is not None:
        log.close()
    return 0


def add_parsers(sub: Any) -> None:
    from pdp.api.cpus import worker_count
    from pdp.commands.serve_http import add_http_options
    from pdp.commands.serve_wasm import add_options as add_signed_wasm_options
    from pdp.net.clientauth import add_client_auth_options
    from pdp.net.metrics_http import add_metrics_options
    from pdp.replay.shadow import add_shadow_options
    from pdp.substrate.kubernetes.enforcement.launch import add_webhook_options

    s = with_records(with_config(sub.add_parser("serve", help="serve the gRPC PDP")))
    s.add_argument("--listen", default="127.0.0.1:50051")
    s.add_argument("--opa-addr", help="use an OPA sidecar at this address instead of launching one")
    s.add_argument(
        "--sidecar-addr",
        help="where the embedded OPA listens (default: a unix socket under --state); e.g. 127.0.0.1:8181",
    )
    s.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve gRPC over TLS")
    s.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    s.add_argument(
        "--token-file",
        type=Path,
        help="file of 'PRINCIPAL TOKEN' lines (admin, tenant:NAME, substrate:NAME), mode 0600, re-read "
        "when it changes: gRPC callers authenticate with 'authorization: Bearer TOKEN' metadata, and the "
        "HTTP API takes it too without --http-token-file; required off loopback",
    )
    # --plaintext: its earlier name, when it covered gRPC only
    add_insecure_option(s, "--plaintext")
    add_webhook_options(s)
    s.add_argument(
        "--webhook-workers",
        type=worker_count,
        default=None,
        metavar="N|auto",
        help="admission webhook processes sharing --webhook-listen (one Python process decides on one "
        "core; with --extender-listen all of them apart from the extender's); auto: one per CPU the "
        "container may use (its CPU limit, pdp/api/cpus.py), the default with --wasm-bundle-url, else 1",
    )
    s.add_argument("--extender-listen", metavar="HOST:PORT", help="serve the kube-scheduler extender")
    s.add_argument("--extender-cert", type=Path, help="PEM certificate chain: serve the extender over HTTPS")
    s.add_argument("--extender-key", type=Path, help="PEM private key of the extender")
    add_client_auth_options(s, "extender", "kube-scheduler's, from its extender tlsConfig certFile")
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
    add_shadow_options(s)
    add_signed_wasm_options(s)
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
    w.add_argument("--token-file", type=Path)
    w.set_defaults(func=cmd_serve_worker)
