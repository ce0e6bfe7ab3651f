"""The drop folder's watcher: every complete new photo becomes one queued job.

A watchdog observer reports what happens in `watch.drop_dir` (and its subfolders when
`watch.recursive`); a scan at start finds what arrived while the worker was down, and a slow
rescan catches anything an event missed (a full inotify queue, a folder moved in). Candidates pass
the ignore rules (`rules.py`), wait until they are complete (`settle.py`), and are then hashed
and queued, once per content.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from instaflyd.config import WatchConfig
from instaflyd.jobs import enqueue_file
from instaflyd.logs import FaultLog
from instaflyd.store import Database
from instaflyd.store.jobs import last_queued_by_input
from instaflyd.watch.duplicates import note_duplicate
from instaflyd.watch.rules import DropRules
from instaflyd.watch.settle import Settler

log = logging.getLogger("instafly.watch")

RESCAN_SECONDS = 60.0
# What the observer reports; opens and reads (ours included) are not news.
EVENT_TYPES = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]


class _DropFolderEvents(FileSystemEventHandler):
    """Turns the observer's events into what the settler needs to know."""

    def __init__(self, watcher: DropWatcher) -> None:
        self.watcher = watcher

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.watcher.note(Path(os.fsdecode(event.src_path)), self.watcher.settler.seen)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.watcher.note(Path(os.fsdecode(event.src_path)), self.watcher.settler.written)

    def on_closed(self, event: FileSystemEvent) -> None:
        self.watcher.note(Path(os.fsdecode(event.src_path)), self.watcher.settler.closed)

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.watcher.settler.forget(Path(os.fsdecode(event.src_path)))
            # A photo copied under a temp name counts once it is renamed into place.
            self.watcher.note(Path(os.fsdecode(event.dest_path)), self.watcher.settler.seen)

    def on_deleted(self, event: FileSystemEvent) -> None:
        self.watcher.settler.forget(Path(os.fsdecode(event.src_path)))


class DropWatcher:
    """Watches the drop folder in the background and queues each complete photo.

    `on_queued` is called (from the watcher's thread) after a new job was queued.
    """

    def __init__(
        self,
        watch: WatchConfig,
        db_path: Path,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.drop_dir = watch.drop_dir
        self.recursive = watch.recursive
        self.output_dir = watch.output_dir
        self.rules = DropRules(watch.drop_dir, watch.output_dir, watch.recursive)
        self.settler = Settler(watch.settle_seconds)
        self.tick = min(0.25, max(0.05, watch.settle_seconds / 4))
        self.db_path = db_path
        self.on_queued = on_queued
        self._observer = Observer()
        self._thread = threading.Thread(target=self._run, name="drop-folder", daemon=True)
        self._stop = threading.Event()
        # Files already hashed by this process, as (size, mtime, ctime): rescans skip them.
        self._hashed: dict[Path, tuple[int, int, int]] = {}

    def start(self) -> None:
        """Scan the folder, then watch it; returns at once."""
        self.drop_dir.mkdir(parents=True, exist_ok=True)
        self._observer.schedule(
            _DropFolderEvents(self),
            str(self.drop_dir),
            recursive=self.recursive,
            event_filter=EVENT_TYPES,
        )
        self._observer.start()
        self._thread.start()
        log.info("watching %s%s", self.drop_dir, " and its subfolders" if self.recursive else "")

    def stop(self) -> None:
        self._stop.set()
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=5)
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def note(self, path: Path, report: Callable[[Path], None]) -> None:
        """Pass an event about `path` to the settler, unless the rules ignore the file."""
        reason = self.rules.ignore_reason(path)
        if reason is None:
            report(path)
        else:
            log.debug("ignoring %s: %s", path, reason)

    def scan(self) -> int:
        """Put every candidate file in the folder before the settler; returns how many."""
        found = 0
        for path in self._files():
            if self.rules.ignore_reason(path) is None and path not in self.settler:
                self.settler.seen(path)
                found += 1
        return found

    def _files(self) -> Iterator[Path]:
        folders = [self.drop_dir]
        while folders:
            try:
                entries = list(os.scandir(folders.pop()))
            except OSError as exc:
                log.warning("cannot list %s: %s", exc.filename, exc.strerror)
                continue
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    if not self.rules.skips_folder(path):
                        folders.append(path)
                elif entry.is_file(follow_symlinks=False):
                    yield path

    def _run(self) -> None:
        db: Database | None = None
        next_scan = 0.0
        fault = FaultLog(log, "the drop-folder watcher cannot queue photos; trying every 5 s")
        try:
            while not self._stop.is_set():
                try:
                    if db is None:  # opened here: a read-only or full store at start heals too
                        db = Database(self.db_path)
                    if time.monotonic() >= next_scan:
                        self.scan()
                        next_scan = time.monotonic() + RESCAN_SECONDS
                    due = self.settler.due()
                    if due:
                        self._queue(db, due)
                except Exception as exc:  # the store busy, full, read-only or broken: go on
                    fault.failed(exc)
                    next_scan = 0.0  # what was due is found again by the next scan
                    self._stop.wait(5)
                else:
                    fault.ok()
                self._stop.wait(self.tick)
        finally:
            if db is not None:
                db.close()

    def _queue(self, db: Database, paths: list[Path]) -> None:
        queued_at: dict[str, float] | None = None  # read once, if a file is new to this watcher
        for path in paths:
            try:
                info = path.stat()
            except OSError:
                continue
            identity = (info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if self._hashed.get(path) == identity:
                continue
            if queued_at is None:
                queued_at = last_queued_by_input(db.conn)
            # A file unchanged since its job was queued (a scan after a restart): no need to
            # read it again. Any write or rename changes ctime, and no tool can set it back.
            if queued_at.get(str(path), float("-inf")) > info.st_ctime:
                self._hashed[path] = identity
                continue
            job_id = enqueue_file(db, path)
            self._hashed[path] = identity
            if job_id is not None:
                log.info("queued %s as job %d", path, job_id)
                self.on_queued()
            else:  # a copy of a photo already queued: its own result, under its own name
                note_duplicate(db, path, self.output_dir)
