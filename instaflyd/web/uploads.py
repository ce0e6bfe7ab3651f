"""Photos sent from the status page: a safe name, written into the drop folder, queued.

An upload becomes exactly what a photo copied into the drop folder becomes: a file there and a
job in the same queue, so the same content is enhanced once, the worker applies the same limits
and writes the same sidecars. The job is queued here, in the same transaction that gives the
file its name, so the folder's watcher (which may skip odd names) finds it queued already.

Nothing the client sends is believed: the file name is reduced to a short plain name (never a
path, never hidden, never one of Instafly's own output names), and the size is counted while
the bytes are copied, so a lying Content-Length does not matter.

Disk is budgeted in total, not per upload: an upload is refused (507, with the reason) once the
drop folder holds `web.uploads_max_total_mb`, or when its disk would keep less free than
`web.uploads_min_free_mb`; uploads in progress count against both. A photo is staged as a
hidden `.upload-PID-...` file (the watcher ignores hidden files); one that a killed process left
behind is removed when the page starts (`remove_stale_uploads`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from instaflyd.config import Config
from instaflyd.fsutil import remove_stale_temps
from instaflyd.jobs import enqueue
from instaflyd.store import Database
from instaflyd.store.jobs import job_for_content

MAX_NAME_CHARS = 80
CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^\w\-. ()+,]+")


STAGING_PREFIX = ".upload-"
STALE_AFTER_SECONDS = 86_400.0  # a staging file this old is stale whatever its pid says
MB = 1_000_000


class UploadRefused(Exception):
    """The upload breaks a limit; the message says which, for the person who sent it."""

    status = 413  # HTTP: too large


class NoRoom(UploadRefused):
    """The drop folder is at its budget, or its disk at the free-space floor."""

    status = 507  # HTTP: insufficient storage


_STAGED = itertools.count(1)
RECHECK_BYTES = 8 * MB  # the budgets are checked again after each this many bytes copied


@dataclass(frozen=True)
class Upload:
    """One photo received: its job (new, or the earlier one with the same content)."""

    id: int
    name: str
    status: str  # the job's state; an earlier job's when the same photo came before
    duplicate: bool


def safe_name(given: str | None) -> str:
    """A plain file name for what a client called its file: no folders, no hidden or odd names."""
    name = unicodedata.normalize("NFC", given or "")
    name = re.split(r"[/\\]", name)[-1]  # a path's last part (browsers may send C:\...\x.jpg)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # controls
    name = _UNSAFE.sub("_", name).strip(" ._")
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > 5:
        stem, suffix = name, ""
    stem = stem.replace(".instafly", "-instafly")[:MAX_NAME_CHARS].strip(" ._") or "photo"
    return f"{stem}.{suffix.lower()}" if suffix else stem


def receive_upload(
    config: Config, db: Database, stream: IO[bytes], given_name: str | None
) -> Upload:
    """Copy one uploaded photo into the drop folder and queue it; UploadRefused over the limit."""
    watch = config.watch
    name = safe_name(given_name)
    watch.drop_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    staging = watch.drop_dir / f"{STAGING_PREFIX}{os.getpid()}-{next(_STAGED)}{Path(name).suffix}"
    limit = int(config.enhance.max_file_mb * MB)
    _check_room(config, name, 0)
    try:
        with staging.open("xb") as handle:  # hidden until complete: the watcher ignores it
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UploadRefused(
                        f"{name} is larger than {config.enhance.max_file_mb:g} MB"
                        " (enhance.max_file_mb)"
                    )
                if size // RECHECK_BYTES != (size - len(chunk)) // RECHECK_BYTES:
                    _check_room(config, name, 0)  # other uploads may be filling it too
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    try:
        if size == 0:
            raise UploadRefused(f"{name} is empty")
        sha256 = digest.hexdigest()
        # One write transaction: the watcher, seeing the new file, waits for it and then finds
        # the job already there, so the file is queued once.
        with db.transaction() as conn:
            earlier = job_for_content(conn, sha256)
            if earlier is not None:  # the same photo again: one job, no second copy
                return Upload(earlier.id, Path(earlier.input_path).name, earlier.state, True)
            final = _link_free_name(staging, watch.drop_dir, name)
            try:
                job_id = enqueue(conn, final, sha256, via="sent from the page")
                assert job_id is not None  # no job has this content: checked above
            except BaseException:
                final.unlink(missing_ok=True)
                raise
        return Upload(job_id, final.name, "queued", False)
    finally:
        staging.unlink(missing_ok=True)


def _check_room(config: Config, name: str, coming: int) -> None:
    """NoRoom when the drop folder is at its budget or its disk at the free-space floor
    (staging files of uploads in progress are in the folder, so they count)."""
    web = config.web
    folder = config.watch.drop_dir
    held = folder_bytes(folder) + coming
    if held >= web.uploads_max_total_mb * MB:
        raise NoRoom(
            f"{name} is not taken: the drop folder holds {held / MB:,.0f} MB, and photos are "
            f"taken from the page only while it holds less than {web.uploads_max_total_mb:,.0f}"
            " MB (web.uploads_max_total_mb); remove photos that are done, or raise the limit"
        )
    free = shutil.disk_usage(folder).free - coming
    if free <= web.uploads_min_free_mb * MB:
        raise NoRoom(
            f"{name} is not taken: the box's disk has {max(0, free) / MB:,.0f} MB free, and "
            f"{web.uploads_min_free_mb:,.0f} MB must stay free (web.uploads_min_free_mb); "
            "free some space on the box, or lower the limit"
        )


def folder_bytes(folder: Path) -> int:
    """The bytes of the files in `folder` and below (links not followed)."""
    total = 0
    stack = [folder]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
    return total


def remove_stale_uploads(folder: Path, now: float | None = None) -> int:
    """Remove staging files that a killed upload left in `folder`: those of a process that is
    gone, and any a day old; the temp files of the writer before them too. Returns how many."""
    now = time.time() if now is None else now
    removed = remove_stale_temps(folder, 0)
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if not entry.name.startswith(STAGING_PREFIX):
                continue
            pid = entry.name[len(STAGING_PREFIX) :].split("-", 1)[0]
            with contextlib.suppress(OSError):
                old = now - entry.stat().st_mtime > STALE_AFTER_SECONDS
                if old or not pid.isdigit() or not _running(int(pid)):
                    entry.unlink()
                    removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link_free_name(staging: Path, folder: Path, name: str) -> Path:
    """Give the staged file `name` in `folder`, or name-2, name-3 ...: never replaces a file."""
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 1
    while True:
        candidate = folder / (name if number == 1 else f"{stem}-{number}{suffix}")
        try:
            os.link(staging, candidate)
            return candidate
        except FileExistsError:
            number += 1
