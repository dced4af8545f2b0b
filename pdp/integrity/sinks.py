"""Where checkpoints go: somewhere the writer can add to but not rewrite.

A sink has two operations, `put` (store one checkpoint under a name, never replacing one) and
`entries` (every checkpoint stored). Two are built in:

- `AppendFile`: one JSON line per checkpoint in a file opened O_APPEND for each write (`file:PATH`,
  or a PATH that is not a folder). Make it append-only for the worker's user (`chattr +a`, or a
  file owned by another user on a filesystem that enforces it) so it cannot be truncated.
- `WriteOnceFolder`: one file per checkpoint, named by log and sequence, created O_EXCL so an
  existing one is never replaced (`dir:PATH`, or a PATH that is a folder or ends with /). Give the
  worker's user the right to create files there but not to remove them (a sticky folder owned by
  another user, or a synced folder with retention).

An object store bucket with write-once objects (S3 Object Lock, GCS retention, a PUT with
If-None-Match: *) and a credential that may only create is the same `put`/`entries` pair.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from pdp.integrity.files import inside, private_dir, private_file

# Where checkpoints go unless a sink is given (`checkpoint_home`).
CHECKPOINT_HOME_ENV = "PDP_CHECKPOINT_HOME"

# How much of an append file is read at a time, from its end, to find the latest checkpoints.
_CHUNK = 1 << 16


class SinkError(Exception):
    pass


class CheckpointExists(SinkError):
    """A checkpoint of that name is stored already (another process checkpointed the same range)."""


class Sink(Protocol):
    location: str

    def put(self, name: str, data: bytes) -> None:
        """Store one checkpoint (`name` is unique per checkpoint); never replaces one."""

    def entries(self) -> Iterator[bytes]:
        """Every checkpoint stored, oldest first where the sink keeps an order."""

    def backwards(self, prefix: str = "") -> Iterator[bytes]:
        """The checkpoints newest first (a writer's start looks for its latest). `prefix`: a hint
        that only names starting with it matter (a folder skips the others unread)."""

    def torn(self) -> bool:
        """Whether the last write was cut short (a crash while writing): it is not an entry."""


class AppendFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = f"file:{path}"

    def put(self, name: str, data: bytes) -> None:
        private_dir(self.path.parent)
        # O_APPEND: every write lands at the end, whatever else appends; never O_TRUNC.
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            line = data + b"\n"
            end = os.fstat(fd).st_size
            if end and os.pread(fd, 1, end - 1) != b"\n":
                line = b"\n" + line  # after a write a crash cut short: start a line of its own
            if os.write(fd, line) != len(line):
                raise SinkError(f"{self.location}: short write of checkpoint {name}")
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> Iterator[bytes]:
        try:
            with self.path.open("rb") as fh:
                for line in fh:
                    if line.endswith(b"\n") and line.strip():
                        yield line[:-1]
        except FileNotFoundError:
            return

    def backwards(self, prefix: str = "") -> Iterator[bytes]:
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            pos = fh.seek(0, os.SEEK_END)
            # Up to the last newline: what follows it is a write a crash cut short, not an entry.
            while pos > 0:
                start = max(0, pos - _CHUNK)
                fh.seek(start)
                cut = fh.read(pos - start).rfind(b"\n")
                pos = start + cut if cut >= 0 else start
                if cut >= 0:
                    break
            pending = b""  # the start of a line whose beginning lies in an earlier chunk
            while pos > 0:
                start = max(0, pos - _CHUNK)
                fh.seek(start)
                head, *lines = (fh.read(pos - start) + pending).split(b"\n")
                pos, pending = start, head
                yield from (line for line in reversed(lines) if line.strip())
            if pending.strip():
                yield pending

    def torn(self) -> bool:
        try:
            with self.path.open("rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    return False
                fh.seek(-1, os.SEEK_END)
                return fh.read(1) != b"\n"
        except FileNotFoundError:
            return False


class WriteOnceFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = f"dir:{path}"

    def put(self, name: str, data: bytes) -> None:
        private_dir(self.path)
        target = self.path / f"{name}.json"
        partial = self.path / f".{name}.{os.getpid()}.partial"
        # Written aside, then linked to its name: link() fails on an existing name (never replaces
        # a checkpoint) and a reader never sees half a checkpoint.
        partial.unlink(missing_ok=True)  # left by a crash of an earlier process with this pid
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.write(fd, data + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(partial, target)
        except FileExistsError as exc:
            raise CheckpointExists(
                f"{self.location}: checkpoint {name} exists already; not replaced"
            ) from exc
        finally:
            partial.unlink()
        folder = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def _names(self) -> list[Path]:
        return sorted(self.path.glob("*.json")) if self.path.is_dir() else []

    def entries(self) -> Iterator[bytes]:
        for path in self._names():
            yield path.read_bytes().rstrip(b"\n")

    def backwards(self, prefix: str = "") -> Iterator[bytes]:
        if self.path.is_dir():
            for path in sorted(self.path.glob(f"{prefix}*.json"), reverse=True):
                yield path.read_bytes().rstrip(b"\n")

    def torn(self) -> bool:
        return False  # a partial file is never linked to a checkpoint's name


def open_sink(spec: str) -> Sink:
    """`file:PATH`, `dir:PATH`, or a bare PATH (a folder when it is one or ends with /)."""
    scheme, sep, rest = spec.partition(":")
    if sep and scheme == "file":
        return AppendFile(Path(rest))
    if sep and scheme == "dir":
        return WriteOnceFolder(Path(rest))
    if sep and rest.startswith("//"):
        raise SinkError(
            f"checkpoint sink {spec!r}: no {scheme}:// sink in this build; use file:PATH or dir:PATH "
            "(an object store is a drop-in `Sink`: pdp/integrity/sinks.py)"
        )
    if not spec:
        raise SinkError("checkpoint sink: empty; expected file:PATH, dir:PATH or a path")
    path = Path(spec)
    if spec.endswith("/") or path.is_dir():
        return WriteOnceFolder(path)
    return AppendFile(path)


def sink_path(sink: Sink) -> Path | None:
    """The local path of a built-in sink (to tell whether it lies inside the state folder)."""
    return sink.path if isinstance(sink, AppendFile | WriteOnceFolder) else None


def checkpoint_home() -> Path:
    """Where checkpoints go unless a sink is given: $PDP_CHECKPOINT_HOME, else gpupaas/checkpoints
    in the user's state home ($XDG_STATE_HOME, else ~/.local/state)."""
    given = os.environ.get(CHECKPOINT_HOME_ENV, "")
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_STATE_HOME", "")
    # The XDG base directory spec: a relative value is invalid and ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "gpupaas" / "checkpoints"


def default_sink(
    state: Path, name: str, option: str, *, legacy: Path | None = None, create: bool = True
) -> str:
    """`file:` the checkpoint file `name` kept for the state folder `state` under
    `checkpoint_home()`, outside `state`, so that whoever can rewrite the state folder (a restored
    backup, a shared volume, another tool's bug) cannot rewrite the checkpoints with it.

    One folder per state folder (its name and a digest of its path): two deployments on one host
    never mix their checkpoints. `create`: the folders are made 0700 (the file is created 0600 by
    its first checkpoint), and checkpoints an earlier version kept at `legacy`, inside the state
    folder, move there, so the log they checkpoint still verifies. SinkError naming `option` when
    no such place can be had (a home inside `state`, or one that cannot be written)."""
    try:
        home = checkpoint_home()
    except RuntimeError as exc:  # no home directory at all
        raise SinkError(f"checkpoints: no place outside the state folder ({exc}); give {option}") from exc
    resolved = state.resolve()
    if inside(home, resolved):
        raise SinkError(
            f"checkpoints: their default place {home} is inside the state folder {state}, where whoever "
            f"can rewrite the records could rewrite them too; give {option} (a sink outside it) or set "
            f"${CHECKPOINT_HOME_ENV}"
        )
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    target = home / f"{resolved.name or 'root'}-{digest}" / name
    if create:
        try:
            private_dir(target.parent)
            if legacy is not None and legacy.is_file() and not target.exists():
                # Whole or not at all (a crash mid-copy must not leave half of them as the sink).
                partial = private_file(target.with_name(f".{name}.partial"))
                shutil.copyfile(legacy, partial)
                os.replace(partial, target)
                legacy.unlink()
        except OSError as exc:
            raise SinkError(
                f"checkpoints: cannot keep them in {target.parent} ({exc.strerror or exc}); give {option} "
                f"(a sink outside the state folder) or set ${CHECKPOINT_HOME_ENV} to a folder this user "
                "can write"
            ) from exc
    return f"file:{target}"
