"""The proxy's writer: the only place the proxy parses bodies or touches SQLite and image files.

It runs in a process of its own, at idle priority. In a thread of the proxy it would share the
interpreter lock with mitmproxy's event loop, and parsing a 300 kB JSON body is one C call that
holds that lock for milliseconds; even a queue's feeder thread, waking for every flow, cost the
event loop measurably (bench/proxy_overhead.py: median latency +29% with a writer thread, +15%
with a multiprocessing.Queue, +0-5% like this).

The event loop's side, `CaptureWriter`, turns each item into one length-prefixed pickle frame and
writes it to a non-blocking pipe (`submit()`: never blocks). What the pipe cannot take at once
waits in a backlog of at most BACKLOG_BYTES that the event loop drains when the pipe is writable;
beyond it, items are dropped and counted. Counters (`count()`) are kept in memory and shipped as
a frame once a second.

The writer process (`write_until_stopped`) owns its own `Database`, feeds captured responses
through an `Ingester`, records TLS failures and flushes counters to the `counters` table. A
failing item is logged and recorded as an event; the loop never dies of it. It stops at the stop
frame, after writing everything before it, or at the end of the pipe when the proxy is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import select
import signal
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from instaflyd import heartbeat, shutdown
from instaflyd.capture.flows import CapturedResponse, path_without_query
from instaflyd.capture.ingest import CaptureError, Ingester, ResponseTooLarge
from instaflyd.capture.matching import PendingImages
from instaflyd.capture.wireguard import CHECK_HOST
from instaflyd.config import Config
from instaflyd.logs import setup_logging
from instaflyd.store import Database, ImageFiles
from instaflyd.store.devices import (
    count_device_tls_failure,
    device_seen,
    device_trusted,
    prune_device_posts,
)
from instaflyd.store.events import add_to_counter, record_event
from instaflyd.store.images import prune_unused_images
from instaflyd.store.tls import count_tls_failure

log = logging.getLogger("instafly.capture")

BACKLOG_BYTES = 64 * 1024 * 1024  # responses waiting beyond the pipe's own buffer
PIPE_BYTES = 1024 * 1024  # asked of the kernel (Linux caps it at /proc/sys/fs/pipe-max-size)
FLUSH_SECONDS = 1.0  # counters and expired images are written at least this often
COMPONENT = "proxy"
WRITER_NICENESS = 10  # where idle scheduling is not allowed
DEVICES_BY_ADDRESS_MAX = 64  # Wi-Fi proxy clients remembered (the least recently seen go)
DEVICE_POSTS_DAYS = 8  # which device captured a post is kept this long ("this week" + a day)
PRUNE_SECONDS = 3600.0
_HEADER = struct.Struct("!I")
_STOP = None  # the frame that ends the writer


@dataclass(frozen=True)
class TlsFailure:
    host: str
    error: str
    device: str | None = None  # wg:<id> or ip:<address>


@dataclass(frozen=True)
class DeviceSeen:
    device: str  # wg:<id> or ip:<address>
    at: float
    trusted: bool  # it completed a handshake with the box's certificate


class CaptureWriter:
    """The event loop's handle on the writer process."""

    def __init__(self, config: Config, backlog_bytes: int = BACKLOG_BYTES) -> None:
        self.config = config
        self.backlog_bytes = backlog_bytes
        self._backlog: deque[memoryview] = deque()
        self._waiting = 0  # bytes in the backlog
        self._head_cut = False  # the backlog's first frame is partly written
        self._counts: Counter[str] = Counter()
        self._draining_on: asyncio.AbstractEventLoop | None = None
        self._shipping: asyncio.TimerHandle | None = None
        self._started = self._stopped = False
        self._connect()

    def _connect(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a threaded event loop
        self._reader, self._pipe = context.Pipe(duplex=False)
        self._fd = self._pipe.fileno()
        os.set_blocking(self._fd, False)
        with contextlib.suppress(OSError, AttributeError):  # a larger pipe: fewer backlogs
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._process = context.Process(
            target=write_until_stopped,
            args=(self.config, self._reader, os.getpid(), log.getEffectiveLevel()),
            name="instafly-writer",
            daemon=True,
        )

    # --- called from mitmproxy's event loop: never blocks -------------------------------------

    def submit(self, item: CapturedResponse | TlsFailure | DeviceSeen) -> bool:
        """Hand an item to the writer; False (and counted) when the backlog is full."""
        frame = _frame(item)
        if self._backlog and self._waiting + len(frame) > self.backlog_bytes:
            self.count("flows_dropped")
            return False
        self._backlog.append(memoryview(frame))
        self._waiting += len(frame)
        self._drain()
        return True

    def count(self, name: str, amount: int = 1) -> None:
        self._counts[name] += amount
        if self._shipping is None:
            with contextlib.suppress(RuntimeError):  # no event loop: shipped at stop()
                loop = asyncio.get_running_loop()
                self._shipping = loop.call_later(FLUSH_SECONDS, self._ship_counts)

    def _ship_counts(self) -> None:
        self._shipping = None
        counts, self._counts = +self._counts, Counter()
        if counts:
            self.submit(counts)  # type: ignore[arg-type]

    def _drain(self) -> None:
        """Write what the pipe takes now; wait for it to be writable for the rest."""
        try:
            while self._backlog:
                head = self._backlog[0]
                try:
                    written = os.write(self._fd, head)
                except BlockingIOError:
                    written = 0
                self._waiting -= written
                if written < len(head):
                    self._backlog[0] = head[written:]
                    self._head_cut = self._head_cut or written > 0
                    self._wait_until_writable()
                    return
                self._backlog.popleft()
                self._head_cut = False
        except BrokenPipeError:
            self._writer_died()
            return
        self._stop_waiting()

    def _wait_until_writable(self) -> None:
        with contextlib.suppress(RuntimeError):  # no event loop: drained at stop()
            loop = asyncio.get_running_loop()
            if self._draining_on is not loop:
                self._stop_waiting()
                loop.add_writer(self._fd, self._drain)
                self._draining_on = loop

    def _stop_waiting(self) -> None:
        if self._draining_on is not None:
            with contextlib.suppress(Exception):  # its loop may be closed already
                self._draining_on.remove_writer(self._fd)
            self._draining_on = None

    def _writer_died(self) -> None:
        """The writer process is gone: start a new one and give it what is still waiting.

        What the dead writer had read but not stored is lost, and so is a frame it got only
        part of (counted as dropped); whole frames in the backlog go to the new writer.
        """
        log.error("capture: the writer process died (exit %s); starting a new one",
                  self._process.exitcode)  # fmt: skip
        if self._head_cut:
            self._waiting -= len(self._backlog.popleft())
            self._head_cut = False
            self.count("flows_dropped")
        self._stop_waiting()
        self._pipe.close()
        self._process.join(5)
        self._connect()
        self.start()
        self._drain()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._process.start()
        self._reader.close()  # the child has its copy; a dead child now means EPIPE here
        self._started = True

    def stop(self, timeout: float | None = None) -> None:
        """Write everything already handed over, then end the writer process, all within
        `timeout` seconds (default: this process's share of the shutdown budget, see
        `instaflyd.shutdown`, so that the proxy is never killed while the writer still works).
        What cannot be written in time is logged at ERROR as lost, never dropped silently."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        if timeout is None:
            timeout = shutdown.for_children(shutdown.PROXY_SHARE)
        deadline = time.monotonic() + timeout
        if self._shipping is not None:
            self._shipping.cancel()
            self._shipping = None
        self._stop_waiting()
        counts, self._counts = +self._counts, Counter()
        for item in (counts, _STOP) if counts else (_STOP,):
            self._backlog.append(memoryview(_frame(item)))
        try:
            self._write_backlog(deadline)
        except BrokenPipeError:
            log.error("capture: the writer process was gone at shutdown")
        if len(self._backlog) > 1:  # more than the stop frame: items a writer never got
            log.error(
                "capture: %d captured items could not be handed to the writer within %.0f s of"
                " the shutdown budget; they are lost",
                len(self._backlog) - 1,
                timeout,
            )
        self._pipe.close()
        self._process.join(max(0.0, deadline - time.monotonic()))
        if self._process.is_alive():
            log.error(
                "capture: the writer did not finish within %.0f s of the shutdown budget;"
                " stopping it: what it had not stored yet is lost",
                timeout,
            )
            self._process.terminate()
            self._process.join(5)

    def _write_backlog(self, deadline: float) -> None:
        """Write the backlog into the pipe as the writer reads it, until `deadline`."""
        while self._backlog:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._fd], [], remaining)[1]:
                return
            head = self._backlog[0]
            try:
                written = os.write(self._fd, head)
            except BlockingIOError:
                continue
            if written < len(head):
                self._backlog[0] = head[written:]
            else:
                self._backlog.popleft()


def _frame(item: object) -> bytes:
    payload = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class PipeInbox:
    """The writer's end of the pipe: one frame at a time; the pipe's end reads as _STOP."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection  # keeps the descriptor open
        self._file = os.fdopen(connection.fileno(), "rb", buffering=0, closefd=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not select.select([self._file], [], [], timeout if block else 0)[0]:
            raise queue.Empty
        header = self._read_exactly(_HEADER.size)
        if header is None:
            return _STOP
        payload = self._read_exactly(_HEADER.unpack(header)[0])
        return _STOP if payload is None else pickle.loads(payload)

    def _read_exactly(self, size: int) -> bytes | None:
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        while got < size:
            read = self._file.readinto(view[got:])
            if not read:
                return None  # the proxy is gone
            got += read
        return bytes(buffer)


# --- the writer process ------------------------------------------------------------------------


def write_until_stopped(
    config: Config, inbox: Any, parent_pid: int | None = None, log_level: int = logging.INFO
) -> None:
    """The writer's loop: store every item until _STOP arrives (or the pipe ends).

    `inbox` is the pipe's Connection in the writer process; a test may run the loop in its own
    process with any object that has `get(timeout=...)`, such as a queue.Queue.
    """
    if parent_pid is not None:  # in the writer process (not a test's thread)
        inbox = PipeInbox(inbox)
        setup_logging(logging.getLevelName(log_level).lower(), component="proxy-writer")
        # The proxy says when to stop, after its last flow: signals for the whole process group
        # (Ctrl-C, a supervisor's SIGTERM) must not cut the pipe short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _run_only_when_idle()
    proxy = config.proxy
    counts: Counter[str] = Counter()
    with Database(config.db_path) as db:
        pending = PendingImages(
            proxy.pending_images_max,
            proxy.pending_images_max_age_seconds,
            proxy.pending_images_max_bytes,
        )
        images = ImageFiles(config.images_dir)
        if pruned := prune_unused_images(db, images):  # left by versions that kept them
            log.info("removed %d stored images that no post uses any more", pruned)
        ingester = Ingester(db, images, pending, proxy.max_body_bytes)
        last_flush = time.monotonic()
        last_prune = -PRUNE_SECONDS
        while True:
            heartbeat.beat("proxy-writer")  # from the loop: a stuck writer goes quiet
            try:
                item = inbox.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                item = Counter()  # nothing came: a good moment to flush
            if isinstance(item, Counter):
                counts.update(item)
            elif item is not _STOP:
                _handle(db, ingester, item, counts)
            if item is _STOP or time.monotonic() - last_flush > FLUSH_SECONDS:
                counts["images_unmatched"] += pending.expire(time.time())
                _flush_counts(db, counts)
                last_flush = time.monotonic()
            if last_flush - last_prune >= PRUNE_SECONDS:
                _prune_device_posts(db)
                last_prune = last_flush
            if item is _STOP:
                return


def _run_only_when_idle() -> None:
    """Capture yields the CPU to the proxy, the worker and the trainer: idle scheduling where
    the kernel allows it, a high nice value otherwise."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            os.nice(WRITER_NICENESS)


def _handle(db: Database, ingester: Ingester, item: object, counts: Counter[str]) -> None:
    try:
        if isinstance(item, DeviceSeen):
            with db.transaction() as conn:
                device_seen(conn, item.device, item.trusted, item.at, DEVICES_BY_ADDRESS_MAX)
        elif isinstance(item, TlsFailure):
            with db.transaction() as conn:
                count_tls_failure(conn, item.host, item.error)
                if item.device is not None:
                    # A device that took the box's certificate before and refuses it now for
                    # Instagram is an app that pins; one that never took it does not trust it.
                    pinned = item.host != CHECK_HOST and device_trusted(conn, item.device)
                    count_device_tls_failure(
                        conn, item.device, item.host, item.error, pinned,
                        max_by_address=DEVICES_BY_ADDRESS_MAX,
                    )  # fmt: skip
        elif isinstance(item, CapturedResponse):
            try:
                counts.update(ingester.ingest(item))
            except ResponseTooLarge as exc:
                log.warning("skipped %s%s: %s", item.host, path_without_query(item.path), exc)
                counts["responses_too_large"] += 1
            except CaptureError as exc:
                where = item.host + path_without_query(item.path)
                _failed(db, "parse_error", f"{where}: {exc}", counts)
    except Exception as exc:
        log.exception("capture: cannot store a response")
        _failed(db, "store_error", f"{type(exc).__name__}: {exc}", counts)


def _prune_device_posts(db: Database) -> None:
    try:
        with db.transaction() as conn:
            prune_device_posts(conn, time.time() - DEVICE_POSTS_DAYS * 86400)
    except Exception as exc:
        log.error("cannot prune which device captured which post: %s", exc)


def _failed(db: Database, kind: str, message: str, counts: Counter[str]) -> None:
    log.warning("%s: %s", kind.replace("_", " "), message)
    counts[kind + "s"] += 1
    record_event(db, COMPONENT, "warning", kind, message)


def _flush_counts(db: Database, counts: Counter[str]) -> None:
    """Write the counts and clear them; on failure they stay for the next flush."""
    positive = +counts
    if not positive:
        return
    try:
        with db.transaction() as conn:
            for name, amount in positive.items():
                add_to_counter(conn, name, amount)
    except Exception as exc:
        log.error("cannot write counters: %s", exc)
        return
    counts.clear()
