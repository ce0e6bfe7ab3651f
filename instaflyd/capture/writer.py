"""The proxy's writer thread: the only place the proxy touches SQLite or the image folder.

mitmproxy's event loop hands work over with `submit()` (never blocks: when the bounded queue is
full the item is dropped and counted) and `count()` (an in-memory counter). The thread owns
its own `Database`, feeds captured responses through an `Ingester`, records TLS failures, and
flushes the counters to the `counters` table. A failing item is logged and recorded as an
event; the thread itself never dies of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass

from instaflyd.capture.flows import CapturedResponse, path_without_query
from instaflyd.capture.ingest import CaptureError, Ingester
from instaflyd.capture.matching import PendingImages
from instaflyd.config import Config
from instaflyd.store import Database, ImageFiles
from instaflyd.store.events import add_to_counter, log_event
from instaflyd.store.tls import count_tls_failure

log = logging.getLogger("instafly.capture")

QUEUE_SIZE = 256  # responses waiting for the writer; each holds one body in memory
FLUSH_SECONDS = 1.0  # counters and expired images are written at least this often
COMPONENT = "proxy"
WRITER_NICENESS = 10


@dataclass(frozen=True)
class TlsFailure:
    host: str
    error: str


_STOP = object()


class CaptureWriter:
    def __init__(self, config: Config, queue_size: int = QUEUE_SIZE) -> None:
        self.config = config
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="instafly-writer", daemon=True)

    # --- called from mitmproxy's event loop: never blocks -------------------------------------

    def submit(self, item: CapturedResponse | TlsFailure) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.count("flows_dropped")
            return False
        return True

    def count(self, name: str, amount: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += amount

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything already queued, then end the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("the writer did not catch up in %.0f s; queued flows are lost", timeout)
            return
        self._thread.join(timeout)

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        _lower_this_threads_priority()
        proxy = self.config.proxy
        with Database(self.config.db_path) as db:
            pending = PendingImages(proxy.pending_images_max, proxy.pending_images_max_age_seconds)
            ingester = Ingester(db, ImageFiles(self.config.images_dir), pending)
            last_flush = time.monotonic()
            while True:
                try:
                    item = self._queue.get(timeout=FLUSH_SECONDS)
                except queue.Empty:
                    item = None
                if item is not None and item is not _STOP:
                    self._handle(db, ingester, item)
                if item is None or item is _STOP or time.monotonic() - last_flush > FLUSH_SECONDS:
                    self.count("images_unmatched", ingester.expire_pending(time.time()))
                    self._flush_counts(db)
                    last_flush = time.monotonic()
                if item is _STOP:
                    return

    def _handle(self, db: Database, ingester: Ingester, item: object) -> None:
        try:
            if isinstance(item, TlsFailure):
                with db.transaction() as conn:
                    count_tls_failure(conn, item.host, item.error)
            elif isinstance(item, CapturedResponse):
                try:
                    outcome = ingester.ingest(item)
                except CaptureError as exc:
                    where = item.host + path_without_query(item.path)
                    self._failed(db, "parse_error", f"{where}: {exc}")
                    return
                for name, amount in outcome.items():
                    self.count(name, amount)
        except Exception as exc:
            log.exception("capture: cannot store a response")
            self._failed(db, "store_error", f"{type(exc).__name__}: {exc}")

    def _failed(self, db: Database, kind: str, message: str) -> None:
        log.warning("%s: %s", kind.replace("_", " "), message)
        self.count(kind + "s")
        try:
            with db.transaction() as conn:
                log_event(conn, COMPONENT, "warning", kind, message)
        except Exception as exc:
            log.error("cannot record the event either: %s", exc)

    def _flush_counts(self, db: Database) -> None:
        with self._counts_lock:
            counts, self._counts = self._counts, Counter()
        counts = +counts  # drop zeros
        if not counts:
            return
        try:
            with db.transaction() as conn:
                for name, amount in counts.items():
                    add_to_counter(conn, name, amount)
        except Exception as exc:
            log.error("cannot write counters: %s", exc)
            with self._counts_lock:
                self._counts.update(counts)


def _lower_this_threads_priority() -> None:
    """Linux gives each thread its own nice value: parsing yields the CPU to the proxy's event
    loop whenever both want it (bench/proxy_overhead.py measures the difference)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
