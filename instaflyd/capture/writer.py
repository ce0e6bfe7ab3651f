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
one `CaptureCounts` record once a second. A frame stays in the proxy's memory until the writer
says it has finished with it, so a writer that dies or is killed because it hung is replaced
(at the next write, or by `check()` within a second) and its successor stores what it had not
finished; what it held in memory is counted as lost (`captures_lost_writer`), and the event log
says so (`writer_replaced`).

The writer process (`write_until_stopped`, `StoreWriting`) owns its own `Database`, feeds
captured responses through an `Ingester`, records TLS failures and flushes counters to the
`counters` table. A response the store refuses for a passing reason (a full disk, a read-only
folder, a held lock) waits in a retry queue bounded in bytes (`capture.retry`) and is stored
when the store takes writes again; the page learns of it from a note outside the store
(`capture.writer_state`). A response that fails for any other reason is logged and recorded
as an event; the loop never dies of it. It stops at the stop frame, after writing everything
before it, or at the end of the pipe when the proxy is gone.
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
from typing import Any, Literal

from instaflyd import heartbeat, repairs, shutdown
from instaflyd.capture.counts import CaptureCounts
from instaflyd.capture.flows import CapturedResponse, path_without_query
from instaflyd.capture.ingest import CaptureError, Ingester, ResponseTooLarge
from instaflyd.capture.matching import PendingImages
from instaflyd.capture.retry import RetryQueue
from instaflyd.capture.wireguard import CHECK_HOST
from instaflyd.capture.writer_state import (
    WAITING,
    WAITING_TITLE,
    WriterState,
    waiting_problem,
    write_state,
)
from instaflyd.clock import SteadyClock
from instaflyd.config import Config
from instaflyd.logs import setup_logging
from instaflyd.store import Database, ImageFiles, StoreError
from instaflyd.store.devices import (
    count_device_tls_failure,
    device_seen,
    device_trusted,
    prune_device_posts,
)
from instaflyd.store.events import Level, add_to_counter, record_event
from instaflyd.store.faults import FAULT_TEXT, Fault, looks_writable, transient_fault
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
# The writer's progress, in integers shared with the proxy: frames it has finished with (stored,
# failed, or held in its retry queue), and what it holds in memory now.
DONE, HELD, PENDING = 0, 1, 2  # ... responses in its retry queue, images waiting for their post
PROGRESS_SLOTS = 3


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


@dataclass(frozen=True)
class WriterReplaced:
    """The first item a writer gets after the one before it died: recorded as an event."""

    exit_code: int | None  # negative: killed by that signal (SIGKILL: it hung, say)
    given_again: int  # frames the dead writer had not finished, given to this one
    lost: int  # responses and images the dead writer held in memory


class CaptureWriter:
    """The event loop's handle on the writer process.

    A frame stays in memory here until the writer has finished with it (stored it, failed it
    or put it in its retry queue), which it says in a few integers shared with this process
    (`_progress`). So when the writer dies, or is killed because it hung, what was in the pipe
    or in its hands goes to the next writer again (storing a response twice changes nothing),
    and only what it held in memory (its retry queue, the images waiting for their post) is
    lost, counted as `captures_lost_writer`. At most a pipe's worth (PIPE_BYTES) and one frame
    wait here, since a writer that does not read fills the pipe and further frames stay in
    the backlog.
    """

    def __init__(self, config: Config, backlog_bytes: int = BACKLOG_BYTES) -> None:
        self.config = config
        self.backlog_bytes = backlog_bytes
        self._backlog: deque[memoryview] = deque()  # whole frames not (fully) in the pipe yet
        self._offset = 0  # bytes of the backlog's first frame already in the pipe
        self._waiting = 0  # bytes of the backlog not in the pipe yet
        self._unfinished: deque[memoryview] = deque()  # in the pipe, or in the writer's hands
        self._counts: Counter[str] = Counter()
        self._draining_on: asyncio.AbstractEventLoop | None = None
        self._shipping: asyncio.TimerHandle | None = None
        self._started = self._stopped = False
        self.restarts = 0  # writer processes started again after one died
        self._connect()

    def _connect(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a threaded event loop
        self._reader, self._pipe = context.Pipe(duplex=False)
        self._fd = self._pipe.fileno()
        os.set_blocking(self._fd, False)
        with contextlib.suppress(OSError, AttributeError):  # a larger pipe: fewer backlogs
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._progress = context.Array("q", PROGRESS_SLOTS, lock=False)  # zeros
        self._given = 0  # whole frames written into this writer's pipe
        self._process = context.Process(
            target=write_until_stopped,
            args=(self.config, self._reader, os.getpid(), log.getEffectiveLevel(), self._progress),
            name="instafly-writer",
            daemon=True,
        )

    # --- called from mitmproxy's event loop: never blocks -------------------------------------

    def submit(self, item: CapturedResponse | TlsFailure | DeviceSeen | CaptureCounts) -> bool:
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

    def check(self) -> None:
        """Called every second or so: a writer that died (killed because it hung, say) is
        replaced now, not at the next flow, and what it finished with is let go."""
        if not self._started or self._stopped:
            return
        if not self._process.is_alive():
            self._writer_died()
        else:
            self._forget_finished()

    def _ship_counts(self) -> None:
        self._shipping = None
        counts, self._counts = +self._counts, Counter()
        if counts:
            self.submit(CaptureCounts.of(counts))

    def _drain(self) -> None:
        """Write what the pipe takes now; wait for it to be writable for the rest."""
        try:
            while self._backlog:
                head = self._backlog[0]
                try:
                    written = os.write(self._fd, head[self._offset :])
                except BlockingIOError:
                    written = 0
                self._waiting -= written
                self._offset += written
                if self._offset < len(head):
                    self._wait_until_writable()
                    return
                self._handed_over()
        except BrokenPipeError:
            self._writer_died()
            return
        self._stop_waiting()

    def _handed_over(self) -> None:
        """The backlog's first frame is all in the pipe: it waits for the writer to finish."""
        self._unfinished.append(self._backlog.popleft())
        self._offset = 0
        self._given += 1
        self._forget_finished()

    def _forget_finished(self) -> None:
        """Let go of the frames the writer has finished with (they are the oldest)."""
        done = self._progress[DONE]
        while len(self._unfinished) > self._given - done:
            self._unfinished.popleft()

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
        """The writer process is gone: start a new one and give it, first and in order, what
        the dead one had not finished (in the pipe, in its hands, or half-written), then the
        backlog. What it held in memory is lost, and counted."""
        self._stop_waiting()
        self._pipe.close()
        self._process.join(5)
        self._forget_finished()
        held = self._progress[HELD] + self._progress[PENDING]
        again = len(self._unfinished)
        self._waiting += self._offset + sum(len(frame) for frame in self._unfinished)
        self._offset = 0
        self._backlog.extendleft(reversed(self._unfinished))
        self._unfinished.clear()
        if held:
            self.count("captures_lost_writer", held)
        exit_code = self._process.exitcode
        log.error(
            "capture: the writer process died (exit %s); starting a new one with the %d"
            " captured items the dead one had not finished%s",
            exit_code,
            again,
            f"; {held} it held in memory (waiting for the store or for their post) are lost"
            if held
            else "",
        )
        told = memoryview(_frame(WriterReplaced(exit_code, again, held)))
        self._backlog.appendleft(told)
        self._waiting += len(told)
        self.restarts += 1
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
        for item in (CaptureCounts.of(counts), _STOP) if counts else (_STOP,):
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
                written = os.write(self._fd, head[self._offset :])
            except BlockingIOError:
                continue
            self._offset += written
            if self._offset == len(head):
                self._handed_over()


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
    config: Config,
    inbox: Any,
    parent_pid: int | None = None,
    log_level: int = logging.INFO,
    progress: Any = None,
) -> None:
    """The writer's loop: store every item until _STOP arrives (or the pipe ends).

    `inbox` is the pipe's Connection in the writer process; a test may run the loop in its own
    process with any object that has `get(timeout=...)`, such as a queue.Queue. `progress`
    (shared with the proxy, see `CaptureWriter`) is told how many frames it has finished
    with: stored, failed or held in memory, and what they added to the counts written (at
    most a second later), so that a writer killed in between leaves nothing uncounted.
    """
    progress = progress if progress is not None else [0] * PROGRESS_SLOTS
    if parent_pid is not None:  # in the writer process (not a test's thread)
        inbox = PipeInbox(inbox)
        setup_logging(logging.getLevelName(log_level).lower(), component="proxy-writer")
        # The proxy says when to stop, after its last flow: signals for the whole process group
        # (Ctrl-C, a supervisor's SIGTERM) must not cut the pipe short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _run_only_when_idle()
    writing = StoreWriting(config)
    try:
        writing.open()
        last_flush = time.monotonic()
        last_prune = -PRUNE_SECONDS
        processed = 0  # frames read from the pipe
        while True:
            heartbeat.beat("proxy-writer")  # from the loop: a stuck writer goes quiet
            framed = True
            try:
                item = inbox.get(timeout=min(FLUSH_SECONDS, writing.retry.seconds_until_due()))
            except queue.Empty:
                item, framed = CaptureCounts(), False  # nothing came: a good moment to flush
            if isinstance(item, CaptureCounts):
                writing.counts.update(dict(item.nonzero()))
            elif isinstance(item, WriterReplaced):
                writing.replaced(item)
            elif item is not _STOP:
                writing.take(item)
            if writing.retry or writing.db is None:
                writing.retry_if_due()
            processed += framed
            progress[HELD], progress[PENDING] = len(writing.retry), len(writing.pending)
            if item is _STOP or time.monotonic() - last_flush > FLUSH_SECONDS:
                writing.flush()
                last_flush = time.monotonic()
                progress[DONE] = processed  # finished with: its counts tried, too
            elif not +writing.counts:  # stored, failed or held, and no count left unwritten
                progress[DONE] = processed
            if last_flush - last_prune >= PRUNE_SECONDS:
                writing.prune_device_posts()
                last_prune = last_flush
            if item is _STOP:
                writing.finish()
                return
    finally:
        writing.close()


def _run_only_when_idle() -> None:
    """Capture yields the CPU to the proxy, the worker and the trainer: idle scheduling where
    the kernel allows it, a high nice value otherwise."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            os.nice(WRITER_NICENESS)


Item = CapturedResponse | TlsFailure | DeviceSeen
Outcome = Literal["stored", "failed"] | Fault
DRAIN_SECONDS = 0.5  # held responses stored at a time, between reads of the pipe
NOTE_SECONDS = 1.0  # the note for the page is renewed at most this often during an outage
HELD_OVERHEAD = 512  # bytes a held item costs beyond its body


class StoreWriting:
    """The writer process's side: the store, the ingester, the counts and the retry queue.

    A response the store refuses for a passing reason (`transient_fault`) waits in the retry
    queue, and so does every one after it; one line is logged when the fault begins and one
    when it ends, with what waited and what was lost, never a line per response.
    """

    def __init__(self, config: Config) -> None:
        proxy = config.proxy
        self.config = config
        self.counts: Counter[str] = Counter()
        self.retry: RetryQueue[Item] = RetryQueue(proxy.store_retry_max_bytes)
        self.pending = PendingImages(
            proxy.pending_images_max,
            proxy.pending_images_max_age_seconds,
            proxy.pending_images_max_bytes,
        )
        self.images = ImageFiles(config.images_dir)
        self.clock = SteadyClock()  # what is old enough to prune: a step forward deletes nothing
        self.db: Database | None = None
        self.ingester: Ingester | None = None
        self.fault: Fault | None = None  # the store refuses writes since fault_since
        self.fault_since: float | None = None
        self._fault_started = 0.0  # monotonic
        self._stored_before = 0  # retry.stored_after_waiting when the fault began
        self._lost_before = 0
        self._overflowed = False
        self._noted = 0.0
        self._errors_logged: set[str] = set()

    # --- the store ----------------------------------------------------------------------------

    def open(self) -> bool:
        """Open the database; False (an outage begins) while a passing fault keeps it shut."""
        if self.db is not None:
            return True
        try:
            self.db = Database(self.config.db_path)
        except StoreError as exc:
            fault = transient_fault(exc)
            if fault is None:
                raise
            self._fault_began(fault)
            return False
        self.ingester = Ingester(
            self.db, self.images, self.pending, self.config.proxy.max_body_bytes,
            clock=time.monotonic,
        )  # fmt: skip
        try:
            if pruned := prune_unused_images(self.db, self.images):  # left by older versions
                log.info("removed %d stored images that no post uses any more", pruned)
        except Exception as exc:
            if transient_fault(exc) is None:
                raise
        self._note(force=True)
        return True

    def close(self) -> None:
        if self.db is not None:
            self.db.close()

    # --- items --------------------------------------------------------------------------------

    def take(self, item: Item) -> None:
        """Store `item` now, or hold it behind those already waiting."""
        if self.retry or self.db is None:
            self._hold(item, self.retry.fault or self.fault or "read_only")
            return
        outcome = self._store(item)
        if outcome != "stored" and outcome != "failed":
            self._hold(item, outcome)

    def retry_if_due(self) -> None:
        fault = self.retry.fault or self.fault
        if fault is not None and looks_writable(self.config.data_dir, fault):
            self.retry.retry_now()
        if self.retry.due() or (self.db is None and not self.retry):
            self.retry_held()

    def retry_held(self) -> None:
        """Try the oldest held item; if the store takes it, the rest follow (for a while)."""
        if self.db is None and not self.open():
            self.retry.failed_again(self.fault or "read_only")
            self._note()
            return
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.retry and time.monotonic() < deadline:
            outcome = self._store(self.retry.oldest())
            if outcome == "stored":
                self.retry.stored_oldest()
            elif outcome == "failed":
                self.retry.dropped_oldest()
            else:
                self.retry.failed_again(outcome)
                self._note()
                return
        if not self.retry:
            self._healed()
        self._note()

    def _store(self, item: Item) -> Outcome:
        assert self.db is not None and self.ingester is not None
        try:
            if isinstance(item, DeviceSeen):
                with self.db.transaction() as conn:
                    device_seen(conn, item.device, item.trusted, item.at, DEVICES_BY_ADDRESS_MAX)
            elif isinstance(item, TlsFailure):
                with self.db.transaction() as conn:
                    count_tls_failure(conn, item.host, item.error)
                    if item.device is not None:
                        # A device that took the box's certificate before and refuses it now
                        # for Instagram is an app that pins; one that never took it does not
                        # trust it.
                        pinned = item.host != CHECK_HOST and device_trusted(conn, item.device)
                        count_device_tls_failure(
                            conn, item.device, item.host, item.error, pinned,
                            max_by_address=DEVICES_BY_ADDRESS_MAX,
                        )  # fmt: skip
            elif isinstance(item, CapturedResponse):
                try:
                    self.counts.update(dict(self.ingester.ingest(item).nonzero()))
                except ResponseTooLarge as exc:
                    log.warning("skipped %s%s: %s", item.host, path_without_query(item.path), exc)
                    self.counts["responses_too_large"] += 1
                except CaptureError as exc:
                    where = item.host + path_without_query(item.path)
                    self._failed("parse_error", f"{where}: {exc}")
                    return "failed"
        except Exception as exc:
            fault = transient_fault(exc)
            if fault is not None:
                return fault
            if type(exc).__name__ not in self._errors_logged:  # a traceback once per kind
                self._errors_logged.add(type(exc).__name__)
                log.exception("capture: cannot store a response")
            self._failed("store_error", f"{type(exc).__name__}: {exc}")
            return "failed"
        return "stored"

    def _hold(self, item: Item, fault: Fault) -> None:
        self._fault_began(fault)
        if not self.retry.hold(item, _held_size(item), fault):
            self.counts[f"captures_lost_{fault}"] += 1
            if not self._overflowed:
                self._overflowed = True
                log.error(
                    "capture: the retry queue is full (%d MB): captured responses are lost"
                    " (and counted) until the store accepts writes again",
                    self.retry.max_bytes // 1_000_000,
                )
        self._note()

    def replaced(self, replaced: WriterReplaced) -> None:
        """This writer took over from one that died: the event log says so."""
        code = replaced.exit_code
        how = (
            "was killed (it had stopped answering, or ran out of memory)"
            if code == -signal.SIGKILL
            else f"ended unexpectedly (exit {code})"
        )
        message = (
            f"The capture writer {how} and was started again; the {replaced.given_again}"
            " captured items it had not finished were given to the new one"
            + (
                f"; {replaced.lost} it held in memory (waiting for the store or for their post)"
                " are lost"
                if replaced.lost
                else ""
            )
            + "."
        )
        if self.db is not None:
            level: Level = "warning" if replaced.lost else "info"
            record_event(self.db, COMPONENT, level, "writer_replaced", message)

    def _failed(self, kind: str, message: str) -> None:
        log.warning("%s: %s", kind.replace("_", " "), message)
        self.counts[kind + "s"] += 1
        if self.db is not None:
            record_event(self.db, COMPONENT, "warning", kind, message)

    # --- the outage ---------------------------------------------------------------------------

    def _fault_began(self, fault: Fault) -> None:
        if self.fault is not None:
            self.fault = fault
            return
        self.fault, self.fault_since = fault, time.time()
        self._fault_started = time.monotonic()
        self._stored_before = self.retry.stored_after_waiting
        self._lost_before = sum(self.retry.lost.values())
        log.warning(
            "capture: cannot write to the store: %s; captured responses wait (up to %d MB) and"
            " are stored once it accepts writes again",
            FAULT_TEXT[fault],
            self.retry.max_bytes // 1_000_000,
        )
        self._note(force=True)

    def _healed(self) -> None:
        if self.fault is None or self.db is None:
            return
        seconds = time.monotonic() - self._fault_started
        stored = self.retry.stored_after_waiting - self._stored_before
        lost = sum(self.retry.lost.values()) - self._lost_before
        message = (
            f"The store could not be written for {seconds:.0f} s ({FAULT_TEXT[self.fault]});"
            f" {stored} captured responses waited and were stored"
            + (f", {lost} were lost because the retry queue was full" if lost else "")
            + "."
        )
        log.info("capture: the store accepts writes again. %s", message)
        self.fault = self.fault_since = None
        self._overflowed = False
        record_event(self.db, COMPONENT, "warning" if lost else "info", "store_recovered", message)
        self._note(force=True)

    def _note(self, force: bool = False) -> None:
        """Renew the note the page reads and the repairs list's card (at once on a change,
        else at most every NOTE_SECONDS)."""
        now = time.monotonic()
        if not force and now - self._noted < NOTE_SECONDS:
            return
        self._noted = now
        state = WriterState(
            pid=os.getpid(),
            updated=time.time(),
            fault=self.fault,
            fault_since=self.fault_since,
            held=self.retry.count(CapturedResponse),  # what the page counts: not the sightings
            held_bytes=self.retry.bytes,
            max_bytes=self.retry.max_bytes,
            stored_after_waiting=self.retry.stored_after_waiting,
            lost=dict(self.retry.lost),
        )
        write_state(self.config.runtime_dir, state)
        if (problem := waiting_problem(state)) is None:
            repairs.resolve(WAITING)
        else:
            repairs.report(WAITING, "error", *problem, title=WAITING_TITLE)

    def prune_device_posts(self) -> None:
        if self.db is None or self.retry:
            return  # the store refuses writes now: next time
        try:
            with self.db.transaction() as conn:
                prune_device_posts(conn, self.clock.now() - DEVICE_POSTS_DAYS * 86400)
        except Exception as exc:
            if transient_fault(exc) is None:
                log.error("cannot prune which device captured which post: %s", exc)

    # --- counters and the end -----------------------------------------------------------------

    def flush(self) -> None:
        """Write the counts (and the images that gave up waiting for their post)."""
        self.counts["images_unmatched"] += self.pending.expire(time.monotonic())
        positive = +self.counts
        if not positive or self.db is None:
            return
        try:
            with self.db.transaction() as conn:
                for name, amount in positive.items():
                    add_to_counter(conn, name, amount)
        except Exception as exc:  # the counts stay for the next flush
            fault = transient_fault(exc)
            if fault is not None:
                self._fault_began(fault)
            elif "counters" not in self._errors_logged:
                self._errors_logged.add("counters")
                log.error("cannot write counters: %s", exc)
            return
        self.counts.clear()
        if not self.retry:
            self._healed()

    def finish(self) -> None:
        """At the stop frame: one last try for what is held; what remains is lost, said so."""
        if self.retry:
            self.retry_held()
        fault = self.retry.fault or self.fault or "io_error"
        if lost := self.retry.give_up():
            self.counts[f"captures_lost_{fault}"] += lost
            log.error(
                "capture: stopping while the store refuses writes (%s): %d captured responses"
                " that waited are lost",
                FAULT_TEXT[fault],
                lost,
            )
        self.flush()
        self._note(force=True)


def _held_size(item: Item) -> int:
    return HELD_OVERHEAD + (len(item.body) if isinstance(item, CapturedResponse) else 0)
