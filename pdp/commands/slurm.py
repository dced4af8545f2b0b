"""`pdp slurm`: render the fleet's Slurm configuration, install the job_submit hook, and realize a
tenant's accounting objects (what the Ansible role gpupaas.pdp.slurm_tenant runs on the controller)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from pdp.config import load_config, validate_tenant
from pdp.opa.binary import PROJECT_ROOT
from pdp.schemas import validator
from pdp.schemas.errors import problems
from pdp.substrate.slurm import accounts, fleet, lua
from pdp.substrate.slurm.adapter import SlurmAdapter, SlurmCommandFailed


def _fleet(path: Path) -> dict[str, Any]:
    """The fleet document's inner object, schema-validated like every other use of it."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = problems(validator("fleet").iter_errors(loaded))
    if found:
        raise SystemExit("\n".join(f"{path}: {where}: {problem}" for where, problem in found))
    return dict(loaded["fleet"])


def cmd_conf(args: argparse.Namespace) -> int:
    config = load_config(args.tenants, args.fleet)
    if args.gres:
        sys.stdout.write(fleet.gres_conf(config.fleet, args.device_files))
    else:
        sys.stdout.write(fleet.slurm_conf_fleet(config.fleet))
    return 0


def cmd_install_hook(args: argparse.Namespace) -> int:
    try:
        settings = lua.HookSettings(
            pdp_socket=args.pdp_socket,
            pdp_url=args.pdp_url,
            insecure_loopback_http=args.insecure_loopback_http,
            timeout=args.timeout,
            cache_seconds=args.cache_seconds,
            token_file=args.token_file,
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    lua.install(args.conf_dir, _fleet(args.fleet), settings)
    print(f"installed {lua.SCRIPT} and {lua.SETTINGS} in {args.conf_dir}")
    return 0


def cmd_realize(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.tenant == "-" else Path(args.tenant).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    errors = validate_tenant(document, args.tenant)
    if errors:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 2
    policy = document["tenant"]
    adapter = SlurmAdapter(args.slurm_conf, args.cluster)
    users = [u for u in args.users.split(",") if u] if args.users else []
    rendered = accounts.render(policy, _fleet(args.fleet), users)
    try:
        adapter.ensure_cluster()
        for obj in [*accounts.qos_objects(), *rendered["namespaces"], *rendered["kueue"]]:
            adapter.apply(obj)
        missing = [o["kind"] for o in rendered["namespaces"] + rendered["kueue"] if not adapter.exists(o)]
    except SlurmCommandFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if missing:
        held = ", ".join(missing)
        print(f"error: after applying, slurmdbd does not hold {held} as rendered", file=sys.stderr)
        return 1
    report = {"tenant": policy["name"], "changed": bool(adapter.changes), "commands": adapter.changes}
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


def add_parser(sub: Any) -> None:
    slurm = sub.add_parser(
        "slurm", help="Slurm: configuration from the fleet, the job_submit hook, tenant accounts"
    )
    ssub = slurm.add_subparsers(dest="slurm_command", required=True)
    c = ssub.add_parser("conf", help="the slurm.conf lines (or gres.conf) the fleet makes")
    c.add_argument("--tenants", type=Path, default=PROJECT_ROOT / "examples" / "tenants")
    c.add_argument("--fleet", type=Path, default=PROJECT_ROOT / "examples" / "fleet.yaml")
    c.add_argument("--gres", action="store_true", help="print gres.conf instead")
    c.add_argument(
        "--device-files", default=fleet.DEFAULT_DEVICE_FILES, help="File= pattern ({node}, {last})"
    )
    c.set_defaults(func=cmd_conf)
    h = ssub.add_parser("install-hook", help="write job_submit.lua and its settings next to slurm.conf")
    h.add_argument("--conf-dir", type=Path, required=True)
    h.add_argument("--fleet", type=Path, default=PROJECT_ROOT / "examples" / "fleet.yaml")
    h.add_argument(
        "--pdp-socket", type=Path, help="the PDP's unix socket (pdp serve --http-listen unix:PATH)"
    )
    h.add_argument("--pdp-url", help="http://127.0.0.1:PORT, only with --insecure-loopback-http")
    h.add_argument(
        "--insecure-loopback-http",
        action="store_true",
        help="reach the PDP over plain HTTP on loopback: a process holding the port while the PDP is "
        "down would answer for it",
    )
    h.add_argument("--timeout", type=float, default=0.5)
    h.add_argument("--cache-seconds", type=float, default=5.0)
    h.add_argument("--token-file", type=Path)
    h.set_defaults(func=cmd_install_hook)
    r = ssub.add_parser(
        "realize", help="apply a tenant's account, limits, QOS and partition access (sacctmgr)"
    )
    r.add_argument("tenant", help="tenant document (YAML or JSON), or - for stdin")
    r.add_argument("--fleet", type=Path, default=PROJECT_ROOT / "examples" / "fleet.yaml")
    r.add_argument("--slurm-conf", type=Path, required=True)
    r.add_argument("--cluster", default="gpupaas")
    r.add_argument("--users", default="", help="comma-separated Unix users who submit as the tenant")
    r.set_defaults(func=cmd_realize)
