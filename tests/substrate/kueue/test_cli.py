"""`pdp kueue-objects` and the option checks of `pdp kueue-controller`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pdp.cli import parser
from tests.conftest import ROOT


def test_kueue_objects_prints_the_platform_and_every_tenant() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "kueue-objects"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    docs = list(yaml.safe_load_all(out.stdout))
    queues = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "ClusterQueue")
    assert queues == ["gpupaas-acme-eu", "gpupaas-globex", "gpupaas-initech-spot"]
    assert sum(d["kind"] == "AdmissionCheck" for d in docs) == 1
    assert (
        sum(d["kind"] == "LocalQueue" for d in docs) == 4
    )  # acme-prod, acme-staging, globex-ml, initech-batch


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --kubeconfig FILE or --in-cluster"),
        (["--in-cluster", "--pdp-server", "10.0.0.5:50051"], "is not loopback: give --pdp-ca"),
    ],
)
def test_the_controller_refuses_options_it_cannot_run_safely(argv: list[str], message: str) -> None:
    args = parser().parse_args(["kueue-controller", *argv])
    if "--in-cluster" in argv:
        # Stop before any cluster access: the PDP choice is checked first.
        from pdp.commands.kueue import _decider

        with pytest.raises(SystemExit) as refused, _decider(args):
            pass
    else:
        with pytest.raises(SystemExit) as refused:
            args.func(args)
    assert message in str(refused.value)
