"""The Alibaba GPU cluster trace v2023 as read from its CSV files (pure).

Node lists are `sn,cpu_milli,memory_mib,gpu,model`; task lists are
`name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,qos,pod_phase,creation_time,deletion_time,
scheduled_time]` (the multigpu20 sample has only the first five columns; the mapping file says what
the missing ones become). A malformed row is refused with its file, line and column named: a replay
of half a trace would report on a workload nobody asked about.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
TASK_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
OPTIONAL_TASK_COLUMNS = ("gpu_spec", "qos", "pod_phase", "creation_time", "deletion_time", "scheduled_time")
QOS_CLASSES = ("LS", "BE", "Burstable", "Guaranteed")
MAX_GPUS_PER_TASK = 8


class TraceError(ValueError):
    """A row the replay cannot use: `path:line: column <name>: <problem>`."""

    def __init__(self, path: Path, line: int, column: str, problem: str) -> None:
        self.path, self.line, self.column, self.problem = path, line, column, problem
        where = f"column {column}: " if column else ""
        super().__init__(f"{path}:{line}: {where}{problem}")


@dataclass(frozen=True)
class TraceNode:
    name: str
    number: int  # the number in the node's serial name: the mapping's rules key on it
    cpu_milli: int
    memory_mib: int
    gpus: int
    model: str


@dataclass(frozen=True)
class TraceTask:
    name: str
    number: int
    cpu_milli: int
    memory_mib: int
    gpus: int  # whole GPUs; 1 with gpu_milli < 1000 is a share of one
    gpu_milli: int
    gpu_spec: tuple[str, ...]  # allowed GPU models; empty: any
    qos: str  # "" where the list has no qos column
    creation: int | None  # seconds from the trace's start; None where the list has no times
    deletion: int | None

    @property
    def shares_a_gpu(self) -> bool:
        return self.gpus == 1 and self.gpu_milli < 1000

    @property
    def thousandths(self) -> int:
        """The GPU it holds, in thousandths of one GPU."""
        return self.gpu_milli if self.shares_a_gpu else 1000 * self.gpus


def _number(name: str) -> int:
    digits = name.rsplit("-", 1)[-1]
    return int(digits) if digits.isdigit() else -1


class _Row:
    def __init__(self, path: Path, line: int, row: dict[str, str]) -> None:
        self.path, self.line, self.row = path, line, row

    def fail(self, column: str, problem: str) -> TraceError:
        return TraceError(self.path, self.line, column, problem)

    def text(self, column: str, required: bool = True) -> str:
        value = (self.row.get(column) or "").strip()
        if required and not value:
            raise self.fail(column, "is empty")
        return value

    def integer(self, column: str, low: int = 0, high: int | None = None) -> int:
        value = self.text(column)
        try:
            number = int(value)
        except ValueError:
            raise self.fail(column, f"{value!r} is not a whole number") from None
        if number < low or (high is not None and number > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise self.fail(column, f"{number} is outside {bound}")
        return number

    def optional_integer(self, column: str) -> int | None:
        return self.integer(column) if column in self.row and self.text(column, required=False) else None


def _rows(path: Path, required: tuple[str, ...], parse: Callable[[_Row], T]) -> Iterator[T]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceError(
                path, 1, missing[0], f"the header lacks it (has {', '.join(header) or 'nothing'})"
            )
        for row in reader:
            line = reader.line_num
            if None in row:  # more fields than the header names
                raise TraceError(
                    path, line, "", f"{len(header) + len(row[None])} fields, the header names {len(header)}"
                )
            if any(row[c] is None for c in header):
                raise TraceError(
                    path, line, next(c for c in header if row[c] is None), "missing: the row ends early"
                )
            yield parse(_Row(path, line, row))


def _node(r: _Row) -> TraceNode:
    name = r.text("sn")
    gpus = r.integer("gpu", 0, 64)
    model = r.text("model", required=gpus > 0)
    return TraceNode(name, _number(name), r.integer("cpu_milli", 1), r.integer("memory_mib", 1), gpus, model)


def _task(r: _Row) -> TraceTask:
    name = r.text("name")
    gpus = r.integer("num_gpu", 0, MAX_GPUS_PER_TASK)
    milli = r.integer("gpu_milli", 0, 1000)
    if gpus == 1 and milli == 0:
        raise r.fail("gpu_milli", "0 for a task of one GPU (a share must be 1..1000)")
    qos = r.text("qos", required=False)
    if qos and qos not in QOS_CLASSES:
        raise r.fail("qos", f"{qos!r} is not one of {', '.join(QOS_CLASSES)}")
    creation, deletion = r.optional_integer("creation_time"), r.optional_integer("deletion_time")
    if creation is not None and deletion is not None and deletion < creation:
        raise r.fail("deletion_time", f"{deletion} is before creation_time {creation}")
    spec = tuple(m for m in r.text("gpu_spec", required=False).split("|") if m)
    return TraceTask(
        name,
        _number(name),
        r.integer("cpu_milli"),
        r.integer("memory_mib"),
        gpus,
        milli,
        spec,
        qos,
        creation,
        deletion,
    )


def read_nodes(path: Path, gpu_only: bool = True) -> list[TraceNode]:
    """The nodes of a node list; with `gpu_only`, those with at least one GPU."""
    nodes = list(_rows(path, NODE_COLUMNS, _node))
    return [n for n in nodes if n.gpus > 0] if gpu_only else nodes


def read_tasks(path: Path) -> list[TraceTask]:
    return list(_rows(path, TASK_COLUMNS, _task))
