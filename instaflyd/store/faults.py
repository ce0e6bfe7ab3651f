"""Which store errors are passing faults (a full disk, a read-only folder, a lock held too long).

A write that fails because the disk is full or the folder is read-only will work again once
the household frees space or the card is writable again; such a write is held and retried,
never dropped and never counted as a failure of the thing being written. `transient_fault`
tells those errors apart from the ones retrying cannot fix (a bug, a corrupt row), by SQLite's
own result code or the operating system's errno, never by the message's wording.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

Fault = Literal["disk_full", "read_only", "locked", "io_error"]

# What each fault means to a household, and what to do about it.
FAULT_TEXT: dict[str, str] = {
    "disk_full": "the data folder's disk is full",
    "read_only": "the data folder is read-only",
    "locked": "another program holds the database",
    "io_error": "the data folder's disk reports read or write errors",
}

# The same, where the folder is not the data folder (a job's output, say).
FAULT_SHORT: dict[str, str] = {
    "disk_full": "the disk is full",
    "read_only": "the storage is read-only",
    "locked": "another program holds the database",
    "io_error": "the disk reports read or write errors",
}

# What the household can do about each.
FAULT_ACTION: dict[str, str] = {
    "disk_full": "Free some space: delete enhanced photos you no longer need from the output"
    " folder, or empty the drop folder. The box saves what waits by itself once there is room.",
    "read_only": "The SD card or disk has probably developed a fault and the system protected it:"
    " restart the box, and replace the card if it happens again. The box saves what waits by"
    " itself once the storage is writable.",
    "locked": "Close any program that has the database open (a database browser, a backup"
    " tool); the box saves what waits by itself once it is free.",
    "io_error": "The SD card or disk may be failing: restart the box and replace the card if it"
    " happens again.",
}

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_FAULTS: dict[int, Fault] = {
    5: "locked",  # SQLITE_BUSY
    6: "locked",  # SQLITE_LOCKED
    8: "read_only",  # SQLITE_READONLY
    10: "io_error",  # SQLITE_IOERR
    13: "disk_full",  # SQLITE_FULL
    14: "read_only",  # SQLITE_CANTOPEN: the journal or -shm cannot be created
}
# Extended codes that say more than their primary one. SQLITE_IOERR_SHMSIZE is the WAL index
# (-shm) that cannot be enlarged: what opening a store on a full disk meets ("may indicate
# that the underlying filesystem volume is out of space", SQLite's documentation says), not
# a failing card.
_SQLITE_EXTENDED_FAULTS: dict[int, Fault] = {
    10 | 19 << 8: "disk_full",  # SQLITE_IOERR_SHMSIZE
}
_ERRNO_FAULTS: dict[int, Fault] = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EROFS: "read_only",
    errno.EIO: "io_error",
}


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its cause (or context), and so on, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transient_fault(exc: BaseException) -> Fault | None:
    """The passing fault behind `exc` (or its cause), None for anything else."""
    for current in exception_chain(exc):
        if isinstance(current, sqlite3.OperationalError):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code in _SQLITE_EXTENDED_FAULTS:
                return _SQLITE_EXTENDED_FAULTS[code]
            if code is not None and code & 0xFF in _SQLITE_FAULTS:
                return _SQLITE_FAULTS[code & 0xFF]
        elif isinstance(current, OSError) and current.errno in _ERRNO_FAULTS:
            return _ERRNO_FAULTS[current.errno]
    return None


ROOM_BYTES = 1_000_000  # free space that makes a retry after a full disk worth trying at once


def looks_writable(folder: Path, fault: Fault) -> bool:
    """Whether `folder` no longer shows `fault` (one statvfs): worth retrying now rather than
    at the end of the back-off. Only a hint; the retry itself decides."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    if fault == "disk_full":
        return stats.f_bavail * stats.f_frsize >= ROOM_BYTES
    if fault == "read_only":
        return not stats.f_flag & os.ST_RDONLY and os.access(folder, os.W_OK)
    return False
