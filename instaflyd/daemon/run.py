"""`instaflyd run`: the whole appliance in one process tree, as systemd or a person starts it.

The daemon process itself never imports TensorFlow. It serves the status page (waitress, on a
thread), starts the proxy and the worker as child processes and keeps them running, runs the
training scheduler, and talks sd_notify: READY once the proxy and the page listen, STATUS with a
one-line summary, WATCHDOG from the main loop, STOPPING on SIGTERM. On SIGTERM or SIGINT it
stops every child within their share of the shutdown budget (`instaflyd.shutdown`: inside
systemd's TimeoutStopSec) and exits 0. If the page's server dies, the daemon says so at ERROR,
stops everything and exits 1, so that systemd restarts the whole appliance with its page.

SIGHUP (`systemctl reload`) reloads the config, as daemons do, without the daemon exiting: a
child whose part of the config changed is stopped and started again with the new file, and one
whose part did not (`daemon.handover`) keeps running, taken over by the new supervisor (the
proxy, the worker) or scheduler (a trainer, a weights fetch or a backup under way), so that
changing the page's port neither cuts the phones' connections through the proxy nor stops a
training run.
An invalid config does not crash-loop, at start or on a reload: the daemon serves only the
safe-mode page with the problems (see `safe_mode`) and starts for real once the file is fixed.
A file that breaks or changes while the daemon runs is said on the repairs list
(`config_watch`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from instaflyd import repairs, shutdown
from instaflyd.config import Config, ConfigError, load_config
from instaflyd.daemon.backups import BackupScheduler
from instaflyd.daemon.children import ChildProcess, instaflyd_argv, stop_all
from instaflyd.daemon.config_watch import CHECK_EVERY_SECONDS, ConfigWatch
from instaflyd.daemon.event_writer import EventWriter
from instaflyd.daemon.handover import PROXY_IGNORES, WORKER_IGNORES, settings_digest
from instaflyd.daemon.housekeeping import Housekeeping
from instaflyd.daemon.image_check import ImageCheck
from instaflyd.daemon.lifelines import Lifelines
from instaflyd.daemon.orphans import end_orphans
from instaflyd.daemon.safe_mode import wait_for_valid_config
from instaflyd.daemon.scheduler import TrainingScheduler
from instaflyd.daemon.sdnotify import Notifier
from instaflyd.daemon.store_recovery import REPLACED, IntegrityCheck, StoreRecovery, open_store
from instaflyd.daemon.supervisor import ComponentSpec, Supervisor, tcp_listening
from instaflyd.daemon.weights_fetch import WeightsFetcher
from instaflyd.status.collect import collect_status, with_live_daemon
from instaflyd.status.document import ComponentStatus, DaemonState, StatusDocument, TrainerStatus
from instaflyd.status.emitter import StatusEmitter
from instaflyd.status.storage import check_storage
from instaflyd.store import Database, ImageFiles, StoreError
from instaflyd.store.faults import FAULT_TEXT, transient_fault
from instaflyd.store.opening import StoreOpening, StoreShut
from instaflyd.web import create_app
from instaflyd.web.password import announce_password
from instaflyd.web.server import WebServer

log = logging.getLogger("instafly.daemon")

TICK_SECONDS = 0.25
STATUS_EVERY_SECONDS = 5.0
EXIT_PAGE_DIED = 1  # systemd's Restart=on-failure starts the daemon again
READY_TIMEOUT = 60.0  # READY even if the proxy is still not listening (STATUS says why)
STORAGE_EVERY_SECONDS = 5.0  # disk space and read-only checks of the repairs list


def run_daemon(config_path: Path | None, data_dir: Path | None, *, verbose: bool = False) -> int:
    stop, reload = threading.Event(), threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: _request_stop(stop, number))
    signal.signal(signal.SIGHUP, lambda _number, _frame: _request_reload(reload))
    notifier = Notifier()

    def load() -> Config:
        return load_config(config_path, data_dir)

    reloaded: Config | None = None  # the config a reload read (and kept children for)
    kept: dict[str, ChildProcess] = {}  # children whose settings a reload did not change
    train_again = False  # a reload stopped a "Train now" run: the next daemon starts it again
    try:
        while True:
            reload.clear()
            try:
                config = reloaded or load()
            except ConfigError as exc:
                healed = wait_for_valid_config(exc.problems, config_path, data_dir, notifier, stop)
                if healed is None:
                    return 0
                config = healed
            if not verbose:
                logging.getLogger("instafly").setLevel(config.log.level.upper())
            daemon = Daemon(config, notifier, load, kept=kept, train_again=train_again)
            kept, train_again = {}, False
            code = daemon.run(stop, reload)
            reloaded, kept, train_again = daemon.reloaded, daemon.kept, daemon.train_again
            if stop.is_set() or not reload.is_set() or code != 0:
                return code
            log.info(
                "reloading the config: starting again with %s", config.source or "the defaults"
            )
    finally:
        if kept:  # handed over for a daemon that never came: they must not outlive us
            stop_all(list(kept.values()), shutdown.for_children(shutdown.DAEMON_SHARE))


def _request_stop(stop: threading.Event, signum: int) -> None:
    if not stop.is_set():
        log.info("%s received: stopping", signal.Signals(signum).name)
    stop.set()


def _request_reload(reload: threading.Event) -> None:
    if not reload.is_set():
        log.info("SIGHUP received: reloading the config")
    reload.set()


def component_specs(config: Config) -> list[ComponentSpec]:
    """The long-running children: the capturing proxy and the drop-folder worker."""
    proxy_ready = (
        None  # WireGuard mode listens on UDP: there is nothing to connect to
        if config.proxy.mode == "wireguard"
        else tcp_listening(config.proxy.listen_host, config.proxy.listen_port)
    )
    proxy_argv, worker_argv = instaflyd_argv(config, "proxy"), instaflyd_argv(config, "worker")
    return [
        ComponentSpec(
            "proxy",
            proxy_argv,
            proxy_ready,
            heartbeat=True,
            title="the proxy",
            hung_effect="phones could not browse through it",
            settings=settings_digest(config, proxy_argv, PROXY_IGNORES),
        ),
        ComponentSpec(
            "worker",
            worker_argv,
            heartbeat=True,
            title="the photo worker",
            hung_effect="new photos were not picked up",
            settings=settings_digest(config, worker_argv, WORKER_IGNORES),
        ),
    ]


class Daemon:
    """The supervisor, the scheduler and the page, driven by one loop on the main thread."""

    def __init__(
        self,
        config: Config,
        notifier: Notifier,
        load: Callable[[], Config] | None = None,
        kept: Mapping[str, ChildProcess] | None = None,
        train_again: bool = False,
    ) -> None:
        self.config = config
        self.notifier = notifier
        self.load = load
        self.adopt = dict(kept or {})  # children an earlier daemon (a reload) left running
        self.reloaded: Config | None = None  # after a reload: the new config...
        self.kept: dict[str, ChildProcess] = {}  # ...and the children left running for it
        self.train_again = train_again  # (also for the next daemon) a forced run was stopped
        self.repairs = repairs.RepairsRegistry()
        # A damaged store is replaced and said; one that cannot be opened for a passing reason
        # (a read-only or full data folder) is waited for (`open_store_if_due`), never exited on.
        self.db: Database | None = None
        self.recovery: StoreRecovery | None = None
        self.store_waiting = StoreWaiting(config, self.repairs)
        self.store_waiting.try_open(self)
        self.events = EventWriter(config.db_path, chores=self._chores)
        self.housekeeping: Housekeeping | None = None  # made on the writer's thread
        self.lifelines = Lifelines(self.repairs, config.faults.hang_seconds)
        self.config_watch = ConfigWatch(config, load or (lambda: config), self.repairs)
        self.supervisor = Supervisor(
            component_specs(config), self.events, lifelines=self.lifelines, repairs=self.repairs
        )
        self.scheduler = TrainingScheduler(config, self.db, self.events, self.lifelines)
        self.weights = WeightsFetcher(config)
        self.integrity: IntegrityCheck | None = None  # made on the writer's thread
        self.images: ImageCheck | None = None  # the same
        self.backups = BackupScheduler(config, self.events, self.repairs)
        self.emitter = StatusEmitter(config, self)
        self._state: DaemonState = "starting"
        self._heartbeat = time.monotonic()

    # --- what the status page reads (DaemonView) --------------------------------------------

    @property
    def state(self) -> DaemonState:
        return self._state

    def components(self) -> dict[str, ComponentStatus | TrainerStatus]:
        return {**self.supervisor.snapshot(), "trainer": self.scheduler.snapshot()}

    def heartbeat_age(self) -> float:
        return time.monotonic() - self._heartbeat

    def problems(self) -> list[repairs.Problem]:
        return self.repairs.problems()

    def request_training(self) -> tuple[bool, str]:
        return self.scheduler.request()

    def latest_status(self) -> StatusDocument | None:
        return self.emitter.latest()

    def refresh_status(self) -> None:
        self.emitter.refresh()

    def status(self) -> StatusDocument:
        """The latest snapshot with the live components (built now before the first one)."""
        snapshot = self.emitter.latest()
        if snapshot is None:
            if self.db is None:  # the page says why (web.database)
                raise self.store_waiting.error()
            return collect_status(self.config, self.db.conn, self)
        return with_live_daemon(snapshot, self.config, self)

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, reload: threading.Event | None = None) -> int:
        """Until `stop` (or `reload`) is set; returns the exit status."""
        web = self.config.web
        self.password_told = announce_password_if_possible(self.config)
        server = WebServer(create_app(self.config, self), web.host, web.port)
        server.start()
        repairs.install(self.repairs)
        self.report_recovery()
        self.events.start()
        if ended := end_orphans(self.config.data_dir):
            self.events.record(
                "daemon",
                "warning",
                "orphans_ended",
                f"ended {len(ended)} process(es) an earlier daemon left running: "
                + ", ".join(f"{o.command} (pid {o.pid})" for o in ended),
            )
        self.check_storage()
        self.emitter.start()
        self.supervisor.start(self.adopt)
        for name, scheduled in self.scheduled().items():
            if (child := self.adopt.get(name)) is not None:
                scheduled.adopt(child)
        self.adopt = {}
        if self.train_again:  # "Train now" was stopped by a reload that changed its settings
            self.train_again = False
            self.scheduler.request()
        started = time.monotonic()
        next_status = 0.0
        next_storage = started + STORAGE_EVERY_SECONDS
        next_config = started + CHECK_EVERY_SECONDS
        while not stop.wait(TICK_SECONDS):
            if reload is not None and reload.is_set():
                break
            now = self._heartbeat = time.monotonic()
            self.supervisor.tick()
            for silent in self.lifelines.overdue():
                if not (self.supervisor.hung(silent) or self.scheduler.hung(silent)):
                    self.lifelines.forget(silent.pid)  # no longer ours: nothing to restart
            if now >= next_storage:
                self.check_storage()
                next_storage = now + STORAGE_EVERY_SECONDS
            if now >= next_config:
                self.check_config()
                next_config = now + CHECK_EVERY_SECONDS
            if self.db is None and self.store_waiting.due(now):
                self.open_store_now()
            try:
                self.scheduler.tick(now)
                self.weights.tick(now)
                self.backups.tick(now)
                proxy_up = self.supervisor.is_up("proxy") or now - started > READY_TIMEOUT
                if self._state == "starting" and server.alive() and proxy_up:
                    self._state = "running"
                    summary = self.summary()
                    self.notifier.ready(summary)
                    log.info("ready: %s", summary)
                elif now >= next_status and self.notifier.enabled:  # for systemd only
                    self.notifier.status(self.summary())
                    next_status = now + STATUS_EVERY_SECONDS
            except Exception:  # a store problem must not take the proxy and the worker down
                log.exception("the training check or the status summary failed")
                next_status = now + STATUS_EVERY_SECONDS
            if not server.alive():
                return self._page_died(server)
            self.notifier.watchdog(now)
        reloading = reload is not None and reload.is_set() and not stop.is_set()
        if reloading:
            self.keep_for_reload()
        self.shutdown(server, reloading=reloading)
        return 0

    def scheduled(self) -> dict[str, TrainingScheduler | WeightsFetcher | BackupScheduler]:
        """The schedulers of one child at a time, by the name a reload hands it over under."""
        return {"trainer": self.scheduler, "weights": self.weights, "backup": self.backups}

    def keep_for_reload(self) -> None:
        """Read the config again; the children whose settings it leaves as they are go on
        running (`kept`, for the next daemon: the proxy, the worker, and a trainer, weights
        fetch or backup under way; `daemon.handover`), the others are stopped with the rest.
        A config that does not load keeps nothing: the safe-mode page follows."""
        if self.load is None:
            return
        try:
            config = self.load()
        except ConfigError:
            return
        now = {spec.name: spec.settings for spec in component_specs(config)}
        same = [
            name
            for name, component in self.supervisor.components.items()
            if now.get(name) == component.spec.settings
        ]
        self.reloaded = config
        self.kept = self.supervisor.release(same)
        restarted = sorted(set(self.supervisor.components) - set(self.kept))
        for name, scheduled in self.scheduled().items():  # only those running now
            running = scheduled.child is not None
            if (child := scheduled.release(config)) is not None:
                self.kept[name] = child
            elif running:
                restarted.append(name)  # by its scheduler, when due (at once if it was)
        self.train_again = "trainer" in restarted and self.scheduler.forced
        log.info(
            "reload: %s",
            "; ".join(
                part
                for part in (
                    f"keeping {', '.join(sorted(self.kept))} (settings unchanged)"
                    if self.kept
                    else "",
                    f"restarting {', '.join(restarted)}" if restarted else "",
                )
                if part
            ),
        )

    def _page_died(self, server: WebServer) -> int:
        """The page's server ended on its own: stop everything, loudly, for systemd to restart."""
        message = (
            f"the status page's server on {server.address} stopped unexpectedly"
            f" ({server.failure or 'no error'}); stopping the daemon so that it is restarted"
        )
        log.error("%s", message)
        self.events.record("web", "error", "page_died", message)
        self.shutdown(server)
        return EXIT_PAGE_DIED

    def begin_stopping(self, reloading: bool = False) -> None:
        """From now on the page and /healthz say "stopping" (still healthy), and so does systemd
        (which is told "reloading" instead when the daemon starts again with the new config)."""
        self._state = "stopping"
        if reloading:
            self.notifier.reloading()
        else:
            self.notifier.stopping("stopping: ending the proxy, the worker and any training")

    def shutdown(self, server: WebServer, reloading: bool = False) -> None:
        self.begin_stopping(reloading)
        started = time.monotonic()
        others = [self.scheduler.stop(), self.weights.stop(), self.backups.stop()]
        budget = shutdown.for_children(shutdown.DAEMON_SHARE)
        codes = self.supervisor.stop(budget, also=[c for c in others if c is not None])
        log.info(
            "children stopped in %.1f s (%s)",
            time.monotonic() - started,
            ", ".join(f"{name} {code}" for name, code in codes.items()) or "none running",
        )
        server.stop()
        self.emitter.stop()
        self.events.stop(timeout=2)
        repairs.install(None)
        if self.db is not None:
            self.db.close()

    def report_recovery(self) -> None:
        if self.recovery is not None:
            title, sentence, action = self.recovery.problem()
            self.repairs.report(REPLACED, "warning", sentence, action, title=title)

    def open_store_now(self) -> None:
        """The store could not be opened so far: try again; once it opens, training checks
        start and the page shows everything again."""
        if not self.store_waiting.try_open(self):
            return
        assert self.db is not None
        self.scheduler.db = self.db
        self.report_recovery()
        if not self.password_told:
            self.password_told = announce_password_if_possible(self.config)

    def _chores(self, db: Database) -> None:
        """On the event writer's thread and connection: what would keep the loop waiting."""
        if self.housekeeping is None:
            self.housekeeping = Housekeeping(self.config, db)
        self.housekeeping.tick()
        if self.integrity is None:
            self.integrity = IntegrityCheck(db)
        self.integrity.tick()
        if self.images is None:
            self.images = ImageCheck(db, ImageFiles(self.config.images_dir))
        self.images.tick()

    def check_config(self) -> None:
        try:
            self.config_watch.check()
        except Exception:  # a check must never stop the loop
            log.exception("could not check the config file")

    def check_storage(self) -> None:
        try:
            check_storage(self.config, self.repairs)
        except Exception:  # a check must never stop the loop
            log.exception("could not check the free disk space")

    def summary(self) -> str:
        """One line for `systemctl status`: components, counts, model."""
        try:
            return status_line(self.status())
        except StoreError:  # not opened yet: what is known without it
            parts = [f"{p.severity.upper()}: {p.title}" for p in self.problems()[:1]]
            parts += [f"{name} {c.state}" for name, c in self.components().items()]
            return "; ".join(parts)


STORE_WAITING = "store.waiting"  # the repairs list's id while the store cannot be opened
STORE_RETRY_SECONDS = 2.0  # how often the daemon tries to open it meanwhile


class StoreWaiting:
    """The daemon's store while it cannot be opened for a passing reason (a read-only or full
    data folder at start): one log line and a repairs card when it begins, a try every
    STORE_RETRY_SECONDS from the daemon's loop (`store.opening`, never blocking it), one log
    line when it opens. The proxy and the worker run meanwhile: the phones browse, and what
    they capture and the photos dropped wait in their processes (`capture.retry`, the watcher)
    until the store takes them."""

    def __init__(self, config: Config, registry: repairs.RepairsRegistry) -> None:
        self.registry = registry
        self.opening = StoreOpening(
            lambda: open_store(config),
            every=STORE_RETRY_SECONDS,
            waiting=self._waiting,
            opened=self._opened,
        )

    def due(self, now: float) -> bool:
        return self.opening.due(now)

    def try_open(self, daemon: Daemon) -> bool:
        """Open the store into `daemon.db` (and `recovery`); False while a passing fault
        keeps it shut. Any other failure raises, as it always did."""
        opened = self.opening.try_open()
        if opened is None:
            return False
        daemon.db, daemon.recovery = opened
        return True

    def error(self) -> StoreError:
        """What a request that needs the store meets meanwhile."""
        return self.opening.error()

    def _waiting(self, shut: StoreShut) -> None:
        if shut.tries == 1:
            log.error(
                "the store cannot be opened (%s); the page says so and the box starts"
                " using it once it can (trying every %.0f s): %s",
                shut.text,
                STORE_RETRY_SECONDS,
                shut.error,
            )
        self.registry.report(
            STORE_WAITING,
            "error",
            f"The box cannot open its database: {shut.text}. The phones can"
            " still browse; what they capture and the photos dropped meanwhile wait, and"
            " are saved once it can.",
            shut.what_to_do,
            title="The database cannot be opened",
        )

    def _opened(self, shut: StoreShut) -> None:
        log.info(
            "the store opened after %.0f s (%s no longer)",
            time.monotonic() - shut.since,
            shut.text,
        )
        self.registry.resolve(STORE_WAITING)


def announce_password_if_possible(config: Config) -> bool:
    """The first password is made and shown at start; on a read-only or full data folder it
    cannot be saved yet: said once, made once the store opens. True when done."""
    try:
        announce_password(config.data_dir, config.web.password, config.source)
    except OSError as exc:
        if transient_fault(exc) is None:
            raise
        log.error("the page's first password cannot be saved yet (%s): %s", FAULT_TEXT[
            transient_fault(exc) or "io_error"], exc)  # fmt: skip
        return False
    return True


def status_line(status: StatusDocument) -> str:
    """The systemd STATUS line: problems first, then components, counts, model, training."""
    parts = []
    problems = status.repairs.problems
    if problems:
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        parts.append(f"{first.severity.upper()}: {first.title}{more}")
    for name, component in status.components.items():
        if name == "proxy" and component.state == "running":
            proxy = status.capture.proxy
            parts.append(f"proxy on :{proxy.listen_port} ({proxy.mode})")
        elif name != "trainer" or component.state == "running":
            parts.append(f"{name} {component.state}")
    totals, model = status.capture.totals, status.model
    parts.append(f"{totals.posts} posts, {totals.labelled} labelled")
    parts.append(f"model v{model.version}" if model.version else "no model yet")
    training = model.training
    if training.running and training.epochs:
        parts.append(f"training epoch {training.epoch}/{training.epochs}")
    return "; ".join(parts)
