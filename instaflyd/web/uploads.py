"""Photos sent from the status page: a safe name, written into the drop folder, queued.

An upload becomes exactly what a photo copied into the drop folder becomes: a file there and a
job in the same queue, so the same content is enhanced once, the worker applies the same limits
and writes the same sidecars. The job is queued here, in the same transaction that gives the
file its name, so the folder's watcher (which may skip odd names) finds it queued already.

Nothing the client sends is believed: the file name is reduced to a short plain name (never a
path, never hidden, never one of Instafly's own output names), and the size is counted while
the bytes are copied, so a lying Content-Length does not matter.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from instaflyd.config import Config
from instaflyd.fsutil import atomic_writer
from instaflyd.jobs import enqueue
from instaflyd.store import Database
from instaflyd.store.jobs import job_for_content

MAX_NAME_CHARS = 80
CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^\w\-. ()+,]+")


class UploadRefused(Exception):
    """The upload breaks a limit; the message says which, for the person who sent it."""


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
    limit = int(config.enhance.max_file_mb * 1_000_000)
    name = safe_name(given_name)
    watch.drop_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    staging = watch.drop_dir / f".upload-{os.getpid()}-{id(stream)}{Path(name).suffix}"
    with atomic_writer(staging) as handle:  # hidden until complete: the watcher ignores it
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise UploadRefused(
                    f"{name} is larger than {config.enhance.max_file_mb:g} MB (enhance.max_file_mb)"
                )
            digest.update(chunk)
            handle.write(chunk)
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
