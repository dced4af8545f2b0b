"""`pdp serve --engine wasm --wasm-bundle-url URL --bundle-verification-key KEY`: the deployed PDP
decides in-process (the wasm engine) from the signed bundle the bundle server publishes, verified
with the key OPA verifies with (pdp/bundles/follow.py), and `--webhook-workers` defaults to the
CPUs the pod may use (pdp/api/cpus.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pdp.net.listen import is_loopback

if TYPE_CHECKING:  # the engine and httpx load only when serving (tests/commands/test_cli_imports.py)
    from pdp.bundles.follow import BundleFollower
    from pdp.engine.wasm_reload import ReloadableWasmEngine

# Where the verified tarball is kept for the worker processes, under --state.
VERIFIED_WASM_BUNDLE = "verified-wasm-bundle.tar.gz"


@dataclass
class SignedWasm:
    engine: ReloadableWasmEngine
    follower: BundleFollower
    # What worker processes decide with (WorkerSpec): the verified file the follower writes.
    source: dict[str, Any]

    def stop(self) -> None:
        self.follower.stop()
        self.engine.close()


def wanted(args: argparse.Namespace) -> bool:
    """Whether `pdp serve` decides with the signed wasm bundle; refuses half of its options."""
    url = getattr(args, "wasm_bundle_url", None)
    key = getattr(args, "bundle_verification_key", None)
    if not url and not key:
        return False
    if not (url and key):
        raise SystemExit("--wasm-bundle-url and --bundle-verification-key go together")
    if args.engine != "wasm":
        raise SystemExit("--wasm-bundle-url needs --engine wasm")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"--wasm-bundle-url {url}: expected an http(s):// URL")
    if parts.scheme == "http" and not (is_loopback(parts.hostname) or args.insecure):
        # The signature keeps the policy honest, not the tenants' data private.
        raise SystemExit(
            f"--wasm-bundle-url {url}: plain http off loopback carries every tenant's data; use "
            "https:// (or --insecure on a private network you trust)"
        )
    return True


def start_signed_wasm(args: argparse.Namespace) -> SignedWasm:
    from pdp.bundles.follow import BundleFollower, BundleFollowerError
    from pdp.engine.wasm_reload import ReloadableWasmEngine

    engine = ReloadableWasmEngine()
    state_file = Path(args.state) / VERIFIED_WASM_BUNDLE
    # A file from an earlier run is not trusted: workers wait for this run's first verified one.
    state_file.unlink(missing_ok=True)
    try:
        follower = BundleFollower(
            args.wasm_bundle_url,
            args.bundle_verification_key,
            engine.replace,
            state_file=state_file,
            ca_file=args.bundle_ca,
        )
    except BundleFollowerError as exc:
        raise SystemExit(str(exc)) from exc
    follower.poll()  # most starts have the bundle before the first request
    follower.start()
    return SignedWasm(engine, follower, {"wasm_bundle": state_file})


def add_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--wasm-bundle-url",
        metavar="URL",
        help="with --engine wasm: poll this signed wasm bundle (e.g. https://pdp-bundles:8282/"
        "gpupaas.wasm.tar.gz, `pdp build --engine wasm`), verify it and decide with it in-process",
    )
    s.add_argument(
        "--bundle-verification-key",
        type=Path,
        metavar="PEM",
        help="the RSA public key the wasm bundle's signature must verify under (OPA's keys.gpupaas)",
    )
    s.add_argument(
        "--bundle-ca",
        type=Path,
        metavar="PEM",
        help="CA certificates the bundle server's certificate must chain to (default: the system's)",
    )
