"""Files and directories that hold events or state are the service user's alone.

Everything siemgate creates that holds events (the quarantine, the spool, the embedded log's
segments, index and WAL, the file sink's output, dead letters, which live in the log) or state
(confirmation links, which are capabilities, and their locks) is created mode 0600, and each
directory it creates for them 0700, whatever the process's umask: a umask of 022 would give
0644 (readable by every local user), one such as 0277 would give files the service cannot
write. The mode is forced on creation only: a file or directory that exists is left as it
is, so an operator's deliberate `chmod` (say 0640 for a log shipper's group) is respected,
and a directory the config names that already exists (`/var/lib/siemgate`) is not changed.

SQLite gives its `-wal` and `-shm` files the mode of the database file, so creating the
database file first (`private_file`) covers them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700


def private_dir(path: str | Path) -> Path:
    """`path` as a directory: each missing component created 0700. Raises OSError."""
    directory = Path(path)
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for component in reversed(missing):
        try:
            component.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not component.is_dir():
                raise
            continue  # made meanwhile by another process or thread: theirs to set
        os.chmod(component, DIR_MODE)  # the umask may have taken bits away
    return directory


def open_private(path: str | Path, flags: int) -> int:
    """`os.open(path, flags | O_CREAT)`, the file created 0600 if it did not exist."""
    try:
        return os.open(path, flags & ~os.O_CREAT & ~os.O_EXCL)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        # Created by someone else between the two calls: theirs, as it is.
        return os.open(path, flags & ~os.O_CREAT & ~os.O_EXCL)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def private_file(path: str | Path) -> Path:
    """Create `path` (empty, 0600) unless it exists; its directory too (0700).

    An existing file is not even opened: closing a descriptor of an SQLite database drops
    every POSIX lock this process holds on it, those of its open connections included."""
    target = Path(path)
    if target.exists():
        return target
    private_dir(target.parent)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return target  # made meanwhile: theirs, as it is
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return target


def write_private(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to a new or truncated `path` (created 0600)."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())

