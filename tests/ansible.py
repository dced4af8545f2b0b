"""Running the gpupaas.pdp collection with a real ansible-playbook (ansible-core from PyPI) against
localhost, for tests/deploy/test_ansible.py and tests/substrate/slurm/test_ansible_role.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / "deploy" / "ansible"
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def run_playbook(
    directory: Path,
    plays: list[dict[str, Any]],
    *,
    extra_vars: dict[str, Any] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    playbook = directory / "playbook.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    argv = [PLAYBOOK, "-i", "localhost,", "-c", "local", str(playbook)]
    if extra_vars:
        vars_file = directory / "vars.yml"
        vars_file.write_text(yaml.safe_dump(extra_vars))
        argv += ["-e", f"@{vars_file}"]
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_LOCAL_TEMP": str(directory / "tmp"),
        "ANSIBLE_HOME": str(directory / "ansible-home"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_NOCOLOR": "true",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
    }
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=directory)
