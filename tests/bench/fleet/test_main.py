"""The replay command's refusals, before it starts a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fleet.__main__ import main

SLICE = Path(__file__).resolve().parents[3] / "bench" / "fleet" / "slice"


def test_a_work_folder_holding_an_earlier_run_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An earlier run's etcd, started again, brings back its nodes: a node it failed stays not Ready.
    (tmp_path / "work" / "pdp" / "kube" / "etcd").mkdir(parents=True)
    argv = ["--nodes", str(SLICE / "nodes-every-3rd.csv"), "--tasks", str(SLICE / "tasks-every-8th.csv")]
    argv += ["--out", str(tmp_path / "report.md"), "--work", str(tmp_path / "work")]
    assert main(argv) == 2
    assert f"--work {tmp_path / 'work'}: pdp/ holds an earlier run" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()
