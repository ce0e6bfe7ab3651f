"""Serving the page with waitress on a background thread of the daemon, and stopping it.

Waitress is set up so that no device on the LAN can tie the page up with connections it opens
and never finishes (a phone's browser needs a handful): at most PER_CLIENT_CONNECTIONS open
connections per client address (further ones are closed at once and counted); a request's
headers must arrive within HEADER_SECONDS of its first byte, and the whole request (an upload
included) within REQUEST_SECONDS; an idle keep-alive connection is closed after IDLE_SECONDS.
So /healthz keeps answering while one client holds hundreds of half-sent requests.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server

from instaflyd.network import is_loopback, lan_address

log = logging.getLogger("instafly.web")

THREADS = 8
CONNECTION_LIMIT = 200  # all clients together (waitress stops accepting beyond it)
PER_CLIENT_CONNECTIONS = 16
HEADER_SECONDS = 10.0  # from a request's first byte to the end of its headers
REQUEST_SECONDS = 300.0  # from its first byte to its last (a photo upload on slow Wi-Fi)
IDLE_SECONDS = 30.0  # waitress' channel_timeout: a connection with nothing to do
CHECK_EVERY_SECONDS = 1.0  # waitress' cleanup_interval: how often the two timeouts are checked


class WebServerError(Exception):
    """The page cannot listen (port in use, address not on this box)."""


class _TimedRequestParser(HTTPRequestParser):
    """waitress' parser, remembering when the request's first byte arrived."""

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.started = time.monotonic()


class _GuardedChannel(HTTPChannel):
    parser_class = _TimedRequestParser


class ConnectionGuard:
    """The per-client connection limit and the receive timeout, hooked into a waitress server."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.refused = 0  # connections closed because their client had too many open
        self.timed_out = 0  # requests not received completely in time
        self._maintenance = server.maintenance
        server.channel_class = self.open_channel  # called by waitress' handle_accept
        server.maintenance = self.maintenance

    def open_channel(self, server: Any, conn: Any, addr: Any, adj: Any, map: Any = None) -> Any:
        client = addr[0] if isinstance(addr, tuple) else addr
        open_now = sum(
            1
            for channel in list(server.active_channels.values())
            if isinstance(channel.addr, tuple) and channel.addr[0] == client
        )
        if open_now >= PER_CLIENT_CONNECTIONS:
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warning(
                    "%s has %d connections open to the page: closing further ones (%d so far)",
                    client, open_now, self.refused,
                )  # fmt: skip
            conn.close()
            return None
        return _GuardedChannel(server, conn, addr, adj, map=map)

    def maintenance(self, now: float) -> None:
        """waitress' idle check, then: close connections whose request is too slow to arrive."""
        self._maintenance(now)
        for channel in list(self.server.active_channels.values()):
            partial = channel.request
            if partial is None or channel.will_close or not hasattr(partial, "started"):
                continue
            took = time.monotonic() - partial.started
            if took > REQUEST_SECONDS or (took > HEADER_SECONDS and not partial.headers_finished):
                self.timed_out += 1
                channel.will_close = True


class WebServer:
    """waitress on host:port, run by a daemon thread; `stop()` closes it."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        self.app = app
        try:
            self.server = create_server(
                app,
                host=host,
                port=port,
                threads=THREADS,
                ident="instafly",
                connection_limit=CONNECTION_LIMIT,
                channel_timeout=int(IDLE_SECONDS),
                cleanup_interval=int(CHECK_EVERY_SECONDS),
            )
        except OSError as exc:
            raise WebServerError(
                f"the status page cannot listen on {host}:{port}: {exc.strerror}; "
                "stop whatever uses the port or set web.port in the config"
            ) from exc
        self.guard = ConnectionGuard(self.server)
        self.address = f"{host}:{self.server.effective_port}"
        self.host, self.port = host, int(self.server.effective_port)
        self._thread = threading.Thread(target=self._serve, name="waitress", daemon=True)
        self._stopping = False
        self.failure: str | None = None  # why the server ended, if it ended on its own

    def start(self) -> None:
        self._thread.start()
        log.info("status page on %s", " and ".join(page_urls(self.host, self.port)))

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listening socket and open connections; let running requests finish."""
        self._stopping = True
        self.server.task_dispatcher.shutdown(timeout=timeout)
        wasyncore.close_all(self.server._map)
        self._thread.join(timeout)

    def _serve(self) -> None:
        try:
            self.server.run()
        except Exception as exc:
            if self._stopping:  # the loop ends with EBADF once stop() closed the sockets
                log.debug("waitress loop ended", exc_info=True)
                return
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("the status page's server failed")
            return
        if not self._stopping:
            self.failure = "its loop returned"


def page_urls(host: str, port: int) -> list[str]:
    """The page's addresses that answer (not 0.0.0.0, which gets 421): the LAN one first, then
    this box's own; a specific listen address alone."""
    if host not in ("", "0.0.0.0", "::"):
        shown = f"[{host}]" if ":" in host else host
        return [f"http://{shown}:{port}/"]
    lan = lan_address(host)
    urls = [] if is_loopback(lan) else [f"http://{lan}:{port}/"]
    return [*urls, f"http://127.0.0.1:{port}/ (on this box)"]
