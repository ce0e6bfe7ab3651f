"""Serving the page with waitress on a background thread of the daemon, and stopping it.

Waitress is set up so that no device on the LAN, nor many of them together, can tie the page up
with connections they open and never finish, nor make it hold what they send:

- **Connections.** At most PER_CLIENT_CONNECTIONS open per client (an IPv4 address, or an
  IPv6 /64: `instaflyd.clients.client_key`; further ones are closed at once and counted), and
  TOTAL_CONNECTIONS in all. When all are taken, a newcomer holding at least two fewer than the
  clients holding the most, or none at all, takes one of theirs (the one idle longest, never
  one whose request is being answered; `fair_floor`): however many addresses share out the
  budget, even one connection each, a household's phone gets in.
- **Time.** A request's headers must arrive within HEADER_SECONDS of its first byte; then its
  body at MIN_BODY_RATE at least (after BODY_GRACE_SECONDS), and the whole request within
  REQUEST_SECONDS; an idle keep-alive connection is closed after IDLE_SECONDS.
- **Bodies.** A body over SMALL_BODY_BYTES (or chunked, size unknown) is refused with 413 as
  soon as its headers are in, before one byte of it is read or spooled, unless it is sent to
  an upload route with the cookie of a logged-in session (`admits_body`, given by the app);
  and no body is taken over the largest upload (`max_body`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server
from waitress.utilities import RequestEntityTooLarge

from instaflyd.clients import client_key
from instaflyd.fdlimit import connections_within, fair_floor, raise_fd_limit
from instaflyd.network import is_loopback, lan_address

log = logging.getLogger("instafly.web")

THREADS = 8
TOTAL_CONNECTIONS = 640  # all clients together: 40 addresses at their limit
PER_CLIENT_CONNECTIONS = 16  # a phone's browser opens up to 6 to one site, and scripts more
HEADER_SECONDS = 10.0  # from a request's first byte to the end of its headers
BODY_GRACE_SECONDS = 10.0  # then its body may take this long, plus its size at...
MIN_BODY_RATE = 50_000  # ...bytes a second (a 25 MB photo: 8 min 30 s, capped below)
REQUEST_SECONDS = 300.0  # from its first byte to its last (a photo upload on slow Wi-Fi)
IDLE_SECONDS = 30.0  # waitress' channel_timeout: a connection with nothing to do
CHECK_EVERY_SECONDS = 1.0  # waitress' cleanup_interval: how often the two timeouts are checked
ACCEPT_BATCH = 64  # connections taken from the listening socket's queue at a time
SMALL_BODY_BYTES = 64 * 1024  # what any request may send (a log-in form, an action)
HEADER_BYTES = 32 * 1024  # a request's headers (a browser's are under 8 KB)
# So a connection holds at most HEADER_BYTES + SMALL_BODY_BYTES of a stranger's bytes in
# memory, and all of them together TOTAL_CONNECTIONS times that (60 MB).

# Who may send a body over SMALL_BODY_BYTES: (path, Cookie header) -> bool.
AdmitsBody = Callable[[str, "str | None"], bool]


class WebServerError(Exception):
    """The page cannot listen (port in use, address not on this box)."""


class _TimedRequestParser(HTTPRequestParser):
    """waitress' parser, remembering when the request's first byte and its headers arrived,
    and refusing a large body before reading it unless the guard admits it."""

    guard: ConnectionGuard
    content_length: int  # waitress' own attribute, typed for mypy

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.started = time.monotonic()
        self.headers_at: float | None = None

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        self.headers_at = time.monotonic()
        large = self.content_length > SMALL_BODY_BYTES or self.chunked
        if large and not self.guard.admits(self.path, self.headers.get("COOKIE")):
            self.guard.bodies_refused += 1
            self.content_length = 0  # so waitress keeps this reason, not its size check's
            self.error = RequestEntityTooLarge(
                f"a request body over {SMALL_BODY_BYTES // 1024} KB is taken only by an upload"
                " from a logged-in page"
            )
            self.completed = True  # answered at once; the channel reads nothing more


class ConnectionGuard:
    """The connection budgets and the receive deadlines, hooked into a waitress server."""

    def __init__(self, server: Any, admits_body: AdmitsBody | None = None) -> None:
        self.server = server
        self.refused = 0  # connections closed because their client had too many open
        self.evicted = 0  # connections closed to make room for a client with fewer
        self.timed_out = 0  # requests not received completely in time
        self.bodies_refused = 0  # large bodies refused before they were read
        self.accepted = 0
        # TOTAL_CONNECTIONS, fewer if the process may not open that many files
        self.total = connections_within(raise_fd_limit(), 1, TOTAL_CONNECTIONS)
        self._admits_body = admits_body
        self._maintenance = server.maintenance
        self.parser_class = type("GuardedParser", (_TimedRequestParser,), {"guard": self})
        self.channel_class = type(
            "GuardedChannel", (HTTPChannel,), {"parser_class": self.parser_class}
        )
        server.channel_class = self.open_channel  # called by waitress' handle_accept
        server.maintenance = self.maintenance
        self._accept_one = server.handle_accept
        server.handle_accept = self.accept_waiting

    def accept_waiting(self) -> None:
        """Take up to ACCEPT_BATCH waiting connections at once (waitress takes one per turn of
        its loop): while strangers keep reconnecting, a household's connection waits behind
        fewer of theirs."""
        for _ in range(ACCEPT_BATCH):
            before = self.accepted
            self._accept_one()
            if self.accepted == before:
                return  # nothing was waiting (or accept failed)

    def admits(self, path: str, cookie: str | None) -> bool:
        if self._admits_body is None:
            return False
        try:
            return self._admits_body(path, cookie)
        except Exception:
            log.exception("cannot check who sends a large body; refused")
            return False

    def open_channel(self, server: Any, conn: Any, addr: Any, adj: Any, map: Any = None) -> Any:
        self.accepted += 1
        client = _key(addr)
        channels = list(server.active_channels.values())
        held = Counter(_key(ch.addr) for ch in channels)
        if held[client] >= PER_CLIENT_CONNECTIONS:
            held[client] -= self._reap_closed(channels, client)
        if held[client] >= PER_CLIENT_CONNECTIONS:
            self._refuse(conn, client, f"has {held[client]} connections open to the page")
            return None
        open_now = len(channels)
        if open_now >= self.total and held[client]:  # what it closed already is not held
            reaped = self._reap_closed(channels, client)
            held[client] -= reaped
            open_now -= reaped
        if open_now >= self.total and not self._make_room(client, held, channels):
            self._refuse(conn, client, f"is among those holding the page's {open_now}")
            return None
        return self.channel_class(server, conn, addr, adj, map=map)

    def _reap_closed(self, channels: list[Any], client: str) -> int:
        """Close `client`'s connections that it has closed already but the loop has not read
        yet (several are accepted per turn); returns how many."""
        reaped = 0
        for channel in channels:
            if _key(channel.addr) != client:
                continue
            try:
                if channel.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    channel.handle_close()
                    reaped += 1
            except BlockingIOError:
                pass  # open, nothing sent yet
            except OSError:
                channel.handle_close()
                reaped += 1
        return reaped

    def _refuse(self, conn: Any, client: str, why: str) -> None:
        self.refused += 1
        if self.refused == 1 or self.refused % 100 == 0:
            log.warning(
                "%s %s: closing further ones (%d refused so far)", client, why, self.refused
            )
        conn.close()

    def _make_room(self, client: str, held: Counter[str], channels: list[Any]) -> bool:
        """Close the longest-idle connection of the clients holding the most, if they hold
        at least two more than the newcomer, or any when it holds none (`fair_floor`)."""
        most = max(held.values(), default=0)
        if most <= fair_floor(held[client]):
            return False
        tops = {address for address, count in held.items() if count == most}
        idle = [ch for ch in channels if _key(ch.addr) in tops and not ch.requests]
        if not idle:
            return False
        oldest = min(idle, key=lambda ch: ch.last_activity)
        top = _key(oldest.addr)
        oldest.handle_close()
        self.evicted += 1
        if self.evicted == 1 or self.evicted % 100 == 0:
            log.warning(
                "the page's %d connections are all open: closed one of %s's %d for %s"
                " (%d so far)",
                self.total, top, most, client, self.evicted,
            )  # fmt: skip
        return True

    def maintenance(self, now: float) -> None:
        """waitress' idle check, then: close connections whose request is too slow to arrive."""
        self._maintenance(now)
        clock = time.monotonic()
        for channel in list(self.server.active_channels.values()):
            partial = channel.request
            if partial is None or channel.will_close or not hasattr(partial, "started"):
                continue
            if _late(partial, clock):
                self.timed_out += 1
                channel.will_close = True


def _key(addr: Any) -> str:
    """The client a connection's peer address belongs to (`client_key`)."""
    return client_key(str(addr[0]) if isinstance(addr, tuple) else str(addr))


def _late(partial: _TimedRequestParser, now: float) -> bool:
    took = now - partial.started
    if took > REQUEST_SECONDS:
        return True
    if partial.headers_at is None:
        return took > HEADER_SECONDS
    body_time = BODY_GRACE_SECONDS + partial.content_length / MIN_BODY_RATE
    return now - partial.headers_at > body_time


class WebServer:
    """waitress on host:port, run by a daemon thread; `stop()` closes it."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        self.app = app
        total = connections_within(raise_fd_limit(), 1, TOTAL_CONNECTIONS)
        try:
            self.server = create_server(
                app,
                host=host,
                port=port,
                threads=THREADS,
                ident="instafly",
                # The guard keeps TOTAL_CONNECTIONS; waitress stops accepting only beyond
                # it, where one more connection per client could not be made room for.
                connection_limit=total + 8,
                channel_timeout=int(IDLE_SECONDS),
                cleanup_interval=int(CHECK_EVERY_SECONDS),
                max_request_body_size=app.config.get("INSTAFLY_MAX_BODY", SMALL_BODY_BYTES),
                max_request_header_size=HEADER_BYTES,
            )
        except OSError as exc:
            raise WebServerError(
                f"the status page cannot listen on {host}:{port}: {exc.strerror}; "
                "stop whatever uses the port or set web.port in the config"
            ) from exc
        self.guard = ConnectionGuard(self.server, app.config.get("INSTAFLY_ADMITS_BODY"))
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
        if self._thread.is_alive():
            # The loop closes its own sockets when the trigger wakes it, so it ends at once;
            # sockets closed from this thread would leave it in poll() for its 1 s timeout.
            self.server.trigger.pull_trigger(self._close_sockets)
            self._thread.join(timeout)
        if self.server._map:  # the loop never ran, or did not answer the trigger in time
            self._close_sockets()
            if self._thread.ident is not None:
                self._thread.join(timeout)

    def _close_sockets(self) -> None:
        wasyncore.close_all(self.server._map)

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
