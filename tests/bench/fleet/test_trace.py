"""Reading the trace's CSV files: every row of the published lists is read, and a malformed row
is refused naming its file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fleet.trace import TraceError, read_nodes, read_tasks

TRACE = Path(__file__).resolve().parents[4] / "shared" / "traces" / "alibaba-gpu-v2023"
HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
)


@pytest.mark.skipif(not TRACE.exists(), reason="the shared trace is not beside this checkout")
def test_the_published_lists_are_read_whole() -> None:
    nodes = read_nodes(TRACE / "openb_node_list_gpu_node.csv")
    assert len(nodes) == 1213 and sum(n.gpus for n in nodes) == 6212
    tasks = read_tasks(TRACE / "openb_pod_list_default.csv")
    assert len(tasks) == 8152
    assert sum(t.shares_a_gpu for t in tasks) == 3078
    multi = read_tasks(TRACE / "openb_pod_list_multigpu20.csv")  # no qos, no times
    assert multi[0].qos == "" and multi[0].creation is None


def _tasks(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tasks.csv"
    path.write_text(HEADER + body)
    return path


@pytest.mark.parametrize(
    ("row", "line", "column", "problem"),
    [
        (
            "p-0,1000,1024,1,500,,LS,Running,0,10,0\np-1,1000,1024,x,500,,LS,Running,0,10,0\n",
            3,
            "num_gpu",
            "'x' is not a whole number",
        ),
        ("p-0,1000,1024,9,1000,,LS,Running,0,10,0\n", 2, "num_gpu", "9 is outside 0..8"),
        ("p-0,1000,1024,1,0,,LS,Running,0,10,0\n", 2, "gpu_milli", "0 for a task of one GPU"),
        ("p-0,1000,1024,1,500,,XX,Running,0,10,0\n", 2, "qos", "'XX' is not one of"),
        ("p-0,1000,1024,1,500,,LS,Running,20,10,0\n", 2, "deletion_time", "10 is before creation_time 20"),
        ("p-0,1000,1024\n", 2, "num_gpu", "the row ends early"),
        ("p-0,1000,1024,1,500,,LS,Running,0,10,0,extra\n", 2, "", "12 fields, the header names 11"),
    ],
)
def test_a_malformed_row_is_named_by_file_line_and_column(
    tmp_path: Path, row: str, line: int, column: str, problem: str
) -> None:
    path = _tasks(tmp_path, row)
    with pytest.raises(TraceError) as raised:
        read_tasks(path)
    assert (raised.value.path, raised.value.line, raised.value.column) == (path, line, column)
    assert problem in str(raised.value)
    assert str(raised.value).startswith(f"{path}:{line}: ")


def test_a_header_without_a_required_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli,memory_mib,model\nn-0,1,1,T4\n")
    with pytest.raises(TraceError, match=r"nodes.csv:1: column gpu: the header lacks it"):
        read_nodes(path)
