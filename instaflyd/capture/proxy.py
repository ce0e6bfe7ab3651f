"""`instaflyd proxy`: mitmproxy in-process, decrypting only Instagram, with the capture addon.

The proxy listens on `proxy.listen_host:listen_port` in `proxy.mode` (regular or transparent;
`wireguard` leaves that listener out) and, beside it, one WireGuard listener per phone set up on
the page (`listeners.DeviceListeners` keeps them in step with the store). `allow_hosts`
limits TLS interception to Instagram's API and CDN hosts; every other
connection passes through as raw TCP, undecrypted. `ConnectionLimits` bounds each client's open
and idle connections. The CA lives in data_dir/mitmproxy.

Connections are opened to the server lazily (`connection_strategy: lazy`, which
`proxy.mitmproxy_options` may override): the live check's host is answered by the addon itself
and must never be connected to, and WireGuard and transparent flows would otherwise connect to
their destination before the addon sees which host the phone asked for.

mitmproxy logs each WireGuard client's configuration, private key included, when a listener
starts; `_hide_private_keys` keeps any line with a private key out of the log.

mitmproxy exits when an error is logged during start-up (its `errorcheck` addon). Here that check
raises `ProxyStartupError` with mitmproxy's message instead, so the command fails with one clear
line; Instafly's own loggers do not propagate to the root logger, so they can never trigger it.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import signal
import sys
import time
from typing import Any

from mitmproxy import addons, exceptions, master, options
from mitmproxy.addons import errorcheck

from instaflyd import heartbeat
from instaflyd.capture.addon import CaptureAddon
from instaflyd.capture.body_budget import BodyBudget
from instaflyd.capture.box_guard import BoxGuard
from instaflyd.capture.ca import ensure_ca
from instaflyd.capture.cert_budget import CertificateBudget
from instaflyd.capture.compat import plain_os_error
from instaflyd.capture.hosts import ALLOW_HOSTS
from instaflyd.capture.limits import ConnectionLimits
from instaflyd.capture.listeners import DeviceListeners, base_modes
from instaflyd.capture.writer import CaptureWriter
from instaflyd.config import Config
from instaflyd.fdlimit import connections_within, raise_fd_limit
from instaflyd.store import Database, StoreError
from instaflyd.store.faults import FAULT_TEXT, Fault, transient_fault

log = logging.getLogger("instafly.proxy")


WRITER_CHECK_SECONDS = 1.0  # how often the proxy looks whether its writer still runs
CA_RETRY_SECONDS = 2.0  # while the CA cannot be saved (a read-only data folder)

# mitmproxy options Instafly sets from its own config; proxy.mitmproxy_options may not override.
MANAGED_OPTIONS = {
    "mode": "set proxy.mode",
    "listen_host": "set proxy.listen_host",
    "listen_port": "set proxy.listen_port",
    "allow_hosts": "Instafly decrypts Instagram's hosts only",
    "ignore_hosts": "Instafly decrypts Instagram's hosts only",
    "confdir": "the CA lives in data_dir/mitmproxy",
    "proxyauth": "set proxy.auth",
    "ssl_insecure": "capture believes only upstream certificates that mitmproxy verified",
    "tcp_timeout": "set proxy.idle_timeout_seconds",
}
# Options that would write whole flows, cookies and request bodies included, to disk.
FORBIDDEN_OPTIONS = {
    "save_stream_file": "it would store whole flows, cookies included",
    "hardump": "it would store whole flows, cookies included",
}


class ProxyStartupError(Exception):
    """The proxy cannot start; the message says why in one line."""


def proxy_options(config: Config) -> dict[str, Any]:
    """The mitmproxy options for this config (without the escape hatch's extras); the phones'
    WireGuard listeners are added to `mode` once the proxy runs."""
    proxy = config.proxy
    return {
        "mode": base_modes(config),
        "listen_host": proxy.listen_host,
        "listen_port": proxy.listen_port,
        "allow_hosts": list(ALLOW_HOSTS),
        "confdir": str(config.mitmproxy_dir),
        "proxyauth": proxy.auth,
        # Bodies capture will not read (videos) stream through instead of being buffered.
        "stream_large_bodies": str(proxy.max_body_bytes),
        "connection_strategy": "lazy",
    }


def extra_options(config: Config, known: options.Options) -> dict[str, Any]:
    """proxy.mitmproxy_options, checked against mitmproxy's option names."""
    extra = dict(config.proxy.mitmproxy_options)
    for name in extra:
        where = f"proxy -> mitmproxy_options -> {name}"
        if name in MANAGED_OPTIONS:
            raise ProxyStartupError(f"{where}: cannot be set here; {MANAGED_OPTIONS[name]}")
        if name in FORBIDDEN_OPTIONS:
            raise ProxyStartupError(f"{where}: not allowed: {FORBIDDEN_OPTIONS[name]}")
        if name not in known:
            close = difflib.get_close_matches(name, list(known.keys()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ProxyStartupError(f"{where}: not a mitmproxy option{hint}")
    return extra


class StartupCheck(errorcheck.ErrorCheck):
    """mitmproxy's start-up error check, raising instead of exiting the process."""

    name = "errorcheck"  # Master.run() looks the check up by this name

    def __init__(self) -> None:
        super().__init__()
        self.starting = True

    async def shutdown_if_errored(self) -> None:
        await asyncio.sleep(0)  # let pending log records arrive, as ErrorCheck does
        if self.logger.has_errored:
            raise ProxyStartupError(_one_line(self.logger.has_errored[0].getMessage()))

    def finish(self) -> None:
        super().finish()
        self.starting = False

    def quiet_while_starting(self, record: logging.LogRecord) -> bool:
        """Log filter: start-up errors become the ProxyStartupError's message instead."""
        return not (self.starting and record.levelno >= logging.ERROR)


def _one_line(message: str) -> str:
    line = re.sub(r"^\[Errno \d+\]\s*", "", plain_os_error(message.strip().splitlines()[0]))
    if "address already in use" in line:
        line += " (another program uses this port: stop it or set proxy.listen_port)"
    return line


def run_proxy(config: Config, verbose: bool = False) -> None:
    """Serve until SIGTERM or SIGINT; raises ProxyStartupError if the proxy cannot start."""
    if config.proxy.mode == "wireguard" and not config.wireguard.enabled:
        raise ProxyStartupError(
            "proxy.mode is wireguard but wireguard.enabled is false: nothing to listen on"
            " (set proxy.mode: regular, or wireguard.enabled: true)"
        )
    _ensure_ca_when_possible(config)
    try:
        with Database(config.db_path):
            pass  # open and migrate now: a broken database is a start-up error, not a thread's
    except StoreError as exc:
        if exc.fault is None:
            raise
        # A passing fault (a read-only or full disk): phones can browse meanwhile, and what
        # they capture waits in the writer's retry queue until the store takes it.
        log.warning("starting without the store for now: %s", FAULT_TEXT[exc.fault])
    writer = CaptureWriter(config)
    try:
        level = logging.DEBUG if verbose else logging.WARNING
        asyncio.run(_serve(config, writer, level))
    finally:
        writer.stop()


async def _serve(config: Config, writer: CaptureWriter, log_level: int) -> None:
    opts = options.Options()
    proxy = master.Master(opts)
    check = StartupCheck()
    _route_mitmproxy_logs(log_level, check)
    proxy.addons.add(*addons.default_addons())
    fds = raise_fd_limit()
    total = connections_within(fds, 2, config.proxy.max_connections)  # client + server each
    if total < config.proxy.max_connections:
        log.warning(
            "the proxy may open %d files: at most %d connections (proxy.max_connections is %d);"
            " LimitNOFILE in the systemd unit sets the limit",
            fds, total, config.proxy.max_connections,
        )  # fmt: skip
    limits = ConnectionLimits(
        config.proxy.max_connections_per_client,
        config.proxy.idle_timeout_seconds,
        writer.count,
        total,
    )
    capture = CaptureAddon(writer, config.proxy.max_body_bytes)
    guard = BoxGuard(
        writer.count, config.proxy.box_ports_allowed
    )  # before capture: a refused connection never opens
    budget = BodyBudget(
        config.proxy.max_buffered_bytes, config.proxy.max_body_bytes, writer.count
    )  # before capture: its response hook hands capture the kept copy
    certificates = CertificateBudget(writer.count)
    listeners = DeviceListeners(config)
    proxy.addons.add(check, limits, guard, certificates, listeners, budget, capture)
    try:
        # The phones' listeners follow once the proxy runs (DeviceListeners).
        opts.update(**{**proxy_options(config), **extra_options(config, opts)})
    except (exceptions.OptionsError, TypeError, ValueError) as exc:
        raise ProxyStartupError(f"mitmproxy rejected an option: {exc}") from None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, proxy.shutdown)
    writer.start()
    _beat_from_the_loop(loop)
    _check_the_writer(loop, writer)
    await proxy.run()
    # Connections still open are cancelled as the loop closes; that is not worth a traceback.
    loop.set_exception_handler(_quiet_when_cancelled)
    log.info("proxy stopped")


def _beat_from_the_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Heartbeats from mitmproxy's own event loop: if it is stuck, phones are, and it goes quiet."""
    every = heartbeat.interval()
    if every is None:
        return

    def again() -> None:
        heartbeat.beat("proxy")
        loop.call_later(every, again)

    again()


def _ensure_ca_when_possible(config: Config) -> None:
    """The box's CA, made the first time; on a read-only or full data folder that cannot be
    done yet: said once, tried again every few seconds (beating meanwhile: the proxy is not
    hung, it waits), instead of an exit that the supervisor would restart into the same."""
    waiting: Fault | None = None
    while True:
        try:
            ensure_ca(config.mitmproxy_dir)
        except OSError as exc:
            fault = transient_fault(exc)
            if fault is None:
                raise
            if waiting is None:
                log.error(
                    "the proxy's certificate authority cannot be saved (%s): waiting until it"
                    " can (%s)",
                    FAULT_TEXT[fault],
                    exc,
                )
            waiting = fault
            heartbeat.beat("proxy")
            time.sleep(CA_RETRY_SECONDS)
            continue
        if waiting is not None:
            log.info("the proxy's certificate authority is saved: starting")
        return


def _check_the_writer(loop: asyncio.AbstractEventLoop, writer: CaptureWriter) -> None:
    """Every second: a writer that died (or was killed because it hung) is replaced at once,
    and what it had not finished goes to the new one, even when no phone is browsing."""

    def again() -> None:
        writer.check()
        loop.call_later(WRITER_CHECK_SECONDS, again)

    loop.call_later(WRITER_CHECK_SECONDS, again)


def _quiet_when_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def _hide_private_keys(record: logging.LogRecord) -> bool:
    """Log filter: a message with a WireGuard private key (mitmproxy logs each listener's client
    configuration) is not written; the phones' configurations are on the set-up page."""
    try:
        return "PrivateKey" not in record.getMessage()
    except Exception:
        return True


def _route_mitmproxy_logs(level: int, check: StartupCheck) -> None:
    """mitmproxy's own messages go to stderr (journald) in Instafly's format."""
    handler = logging.StreamHandler(sys.stderr)
    for ours in logging.getLogger("instafly").handlers[:1]:
        handler.setFormatter(ours.formatter)
    handler.addFilter(check.quiet_while_starting)
    handler.addFilter(_hide_private_keys)
    mitmproxy_log = logging.getLogger("mitmproxy")
    mitmproxy_log.setLevel(level)
    mitmproxy_log.handlers[:] = [handler]
