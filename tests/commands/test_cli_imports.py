"""What `pdp decide` loads: the one-shot path must not pull in the servers' libraries again.

A regression guard, not a timing test: the warm one-shot costs about a quarter of a second, most
of it imports (docs/performance.md); each of these libraries added tens to hundreds of
milliseconds when `pdp.cli` imported every subcommand's dependencies up front.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.commands.test_cli import config_args
from tests.conftest import EXAMPLES, ROOT

# Libraries of the servers, clients and stores the one-shot does not use.
NOT_FOR_ONE_SHOT = (
    "grpc",
    "aiohttp",
    "opa_client",
    "psycopg",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "dbos",
    "sqlalchemy",
    "prometheus_client",
    "jsonschema",
)

# Runs `main` in a fresh interpreter and prints the top-level packages it loaded.
_PROBE = """
import contextlib, io, json, sys
from pdp.cli import main
status = None
try:
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(sys.argv[1:])
finally:  # also when the command fails: what it loaded until then
    print(json.dumps({"status": status, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def loaded_by(*argv: str) -> tuple[int, set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=300, check=False
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return report["status"], set(report["modules"])


def test_warm_one_shot_decide_loads_no_server_library(workspace: Path, opa_binary: Path) -> None:
    intent = str(EXAMPLES / "intents" / "05-acme-eu-scale-past-entitlement.json")
    cold_status, _ = loaded_by("decide", *config_args(workspace), intent)  # builds the cache
    status, modules = loaded_by("decide", *config_args(workspace), intent)
    assert status == cold_status == 3  # NEEDS_APPROVAL, answered both times
    assert "wasmtime" in modules  # the probe sees what the command loaded
    assert sorted(modules & set(NOT_FOR_ONE_SHOT)) == []


def test_the_guard_sees_grpc_when_decide_asks_a_server(workspace: Path) -> None:
    """The same probe on `pdp decide --server` (nothing listens there): gRPC is loaded, so an
    import that came back on the one-shot path would be seen."""
    intent = str(EXAMPLES / "intents" / "01-acme-eu-deploy-eu.json")
    status, modules = loaded_by("decide", "--server", "127.0.0.1:9", "--timeout", "0.2", intent)
    assert "grpc" in modules
    assert status == 1  # an unreachable PDP is one line on stderr, not a traceback


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_imports_the_top_level_cli() -> None:
    """pdp.cli imports the subcommand modules (lazily); none of them, nor anything else in pdp,
    imports it back: a cycle would load every group again."""
    importers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "pdp").rglob("*.py"))
        if path != ROOT / "pdp" / "cli.py" and "pdp.cli" in _imported_modules(path)
    ]
    assert importers == []
