"""The daemon's status snapshots: one thread builds the document every few seconds.

Requests (the page, /api/status, /metrics) and the systemd STATUS line read the latest snapshot
instead of querying the store each, so a request costs the same on any store size and a busy
page cannot slow the capture writer down. Only the latest snapshot is kept in memory: one
snapshot per 5 minutes goes to the store's bounded history, which the page's charts read
(`status.history`).
`refresh()` asks for a new snapshot now (after "Train now" or a retry, say).
"""

from __future__ import annotations

import logging
import threading

from instaflyd import repairs
from instaflyd.config import Config
from instaflyd.logs import FaultLog
from instaflyd.status.collect import DaemonView, collect_status
from instaflyd.status.document import StatusDocument
from instaflyd.status.history import HistorySampler
from instaflyd.store import Database
from instaflyd.store.opening import StoreOpening

log = logging.getLogger("instafly.status")

EVERY_SECONDS = 2.0
UNREADABLE = "store.unreadable"  # the repairs list's entry while no snapshot can be built


class StatusEmitter:
    def __init__(
        self,
        config: Config,
        daemon: DaemonView | None,
        every: float = EVERY_SECONDS,
        sampler: HistorySampler | None = None,
    ) -> None:
        self.config = config
        self.daemon = daemon
        self.every = every
        self.sampler = sampler or HistorySampler()
        self._latest: StatusDocument | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._built = threading.Condition()
        self._thread: threading.Thread | None = None
        self._build_fault = FaultLog(log, "could not build the status snapshot")
        self._sample_fault = FaultLog(log, "could not record the status history")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="status-emitter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def latest(self) -> StatusDocument | None:
        """The newest snapshot; None before the first (the caller then builds its own)."""
        return self._latest

    def refresh(self, timeout: float = 5.0) -> StatusDocument | None:
        """Build a snapshot now and wait (up to `timeout` s) until it is the latest."""
        with self._built:
            before = self.latest()
            if before is not None:  # else the first build is on its way anyway
                self._wake.set()
            self._built.wait_for(lambda: self.latest() is not before, timeout)
        return self.latest()

    def _run(self) -> None:
        db = self._open()
        if db is None:
            return
        with db:
            while not self._stop.is_set():
                try:
                    document = collect_status(self.config, db.conn, self.daemon)
                except Exception as exc:  # a store problem must not end the snapshots for good
                    self._build_fault.failed(exc)
                    repairs.report(
                        UNREADABLE,
                        "error",
                        "The box cannot read its database, so this page may be out of date"
                        f" ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}).",
                        "If this does not go away within a minute, restart the box. If it comes"
                        " back, the database may be damaged: see Details for the latest backup.",
                        title="The database cannot be read",
                    )
                else:
                    self._build_fault.ok()
                    repairs.resolve(UNREADABLE)
                    with self._built:
                        self._latest = document
                        self._built.notify_all()
                    self._sample(db, document)
                self._wake.wait(self.every)
                self._wake.clear()

    def _open(self) -> Database | None:
        """The emitter's connection; while a passing fault (a read-only or full data folder)
        keeps the store shut, tried again every few seconds (the daemon's repairs list says
        why). None if stopped meanwhile."""
        opening = FaultLog(log, "could not open the store for the status snapshots")
        return StoreOpening(
            lambda: Database(self.config.db_path),
            every=self.every,
            waiting=lambda shut: opening.failed(shut.exception),
            opened=lambda shut: opening.ok(),
        ).wait(self._stop)

    def _sample(self, db: Database, document: StatusDocument) -> None:
        try:
            self.sampler.offer(db, document)
        except Exception as exc:  # a busy or full disk must not end the snapshots either
            self._sample_fault.failed(exc)
        else:
            self._sample_fault.ok()
