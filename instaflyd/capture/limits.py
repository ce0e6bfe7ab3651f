"""The proxy's limits on client connections: one LAN device, nor a crowd of them, cannot hold
hundreds of sockets.

mitmproxy has no option for the first limit, so this small addon keeps it, and sets the second:

- at most `max_per_client` connections open at once from one client address, and `max_total`
  from all of them (`proxy.max_connections`, lowered to what the process's file descriptors
  allow: each connection can take two, the client's and the server's). Once three quarters of
  the total are open, only an address holding fewer than SMALL_CLIENT connections may open
  more, so the last quarter stays for the household's phones: a crowd needs a quarter of the
  total / SMALL_CLIENT more addresses to fill it (125 with the defaults). mitmproxy gives an
  addon no way to close another connection, so the crowd is stopped, not evicted. A
  connection beyond a limit is closed as it arrives (setting `client.error` in
  `client_connected` is mitmproxy's documented way to kill a connection) and counted as
  `connections_refused`;
- a connection without traffic in either direction for `idle_seconds` is closed by mitmproxy's
  own inactivity watchdog (10 minutes unless told): `running` sets its delay from the config,
  through `compat.set_idle_timeout` (an option in mitmproxy 12, a module constant in 11).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from mitmproxy import connection, ctx

from instaflyd.capture.compat import set_idle_timeout

log = logging.getLogger("instafly.proxy")

SMALL_CLIENT = 4  # past 3/4 of the total, an address holding this many may open no more


class ConnectionLimits:
    def __init__(
        self,
        max_per_client: int,
        idle_seconds: float,
        count: Callable[[str], None],
        max_total: int = 1_000_000,
    ) -> None:
        self.max_per_client = max_per_client
        self.max_total = max_total
        self.idle_seconds = idle_seconds
        self.count = count  # the writer's counters
        self._open: Counter[str] = Counter()  # connections open, by client address
        self._admitted: set[str] = set()  # ids of the connections counted in _open
        self.refused = 0

    def running(self) -> None:
        set_idle_timeout(ctx.options, self.idle_seconds)

    def client_connected(self, client: connection.Client) -> None:
        address = str(client.peername[0])
        held, total = self._open[address], len(self._admitted)
        if held >= self.max_per_client:
            client.error = f"more than {self.max_per_client} connections from {address}"
        elif total >= self.max_total:
            client.error = f"all {self.max_total} connections of the proxy are open"
        elif total >= self.max_total * 3 // 4 and held >= SMALL_CLIENT:
            client.error = (
                f"{total} of the proxy's {self.max_total} connections are open; the rest are"
                f" kept for devices with fewer than {SMALL_CLIENT} ({address} has {held})"
            )
        if client.error:
            self.count("connections_refused")
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warning("refused a connection: %s (%d so far)", client.error, self.refused)
            return
        self._open[address] += 1
        self._admitted.add(client.id)

    def client_disconnected(self, client: connection.Client) -> None:
        if client.id in self._admitted:
            self._admitted.discard(client.id)
            address = str(client.peername[0])
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]

    def open_connections(self, address: str) -> int:
        return self._open[address]
