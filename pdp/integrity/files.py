"""State files only their owner can read: folders 0700, files 0600."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# What SQLite creates next to a database; it gives them the database file's mode when it creates them.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """`path` and any missing parents, each folder created here with mode 0700 (existing ones are
    left as they are: the state folder may be a shared parent such as the checkout's var/)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 when absent; an existing file that group or others can
    read or write is narrowed to its owner (a database created 0644 by an earlier version)."""
    private_dir(path.parent)
    if not path.exists():
        # Never open and close an existing database here: closing any descriptor of a file drops
        # every POSIX lock this process holds on it, SQLite's included (sqlite.org/howtocorrupt).
        with contextlib.suppress(FileExistsError):  # created meanwhile by another process
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    narrow(path)
    return path


def private_database(path: Path) -> Path:
    """A SQLite database file and its companions, owner-only (SQLite creates the WAL and shared
    memory files with the database's own mode, so creating the database 0600 first is enough for
    new ones)."""
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            narrow(companion)
    return path


def narrow(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, mode & 0o700)


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (symbolic links resolved)."""
    return path.resolve().is_relative_to(folder.resolve())
