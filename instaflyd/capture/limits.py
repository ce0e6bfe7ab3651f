"""The proxy's limits on client connections: one LAN device cannot hold hundreds of sockets.

mitmproxy has no option for the first limit, so this small addon keeps it, and sets the second:

- at most `max_per_client` connections open at once from one client address; a connection
  beyond it is closed as it arrives (setting `client.error` in `client_connected` is mitmproxy's
  documented way to kill a connection) and counted as `connections_refused`;
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


class ConnectionLimits:
    def __init__(
        self, max_per_client: int, idle_seconds: float, count: Callable[[str], None]
    ) -> None:
        self.max_per_client = max_per_client
        self.idle_seconds = idle_seconds
        self.count = count  # the writer's counters
        self._open: Counter[str] = Counter()  # connections open, by client address
        self._admitted: set[str] = set()  # ids of the connections counted in _open

    def running(self) -> None:
        set_idle_timeout(ctx.options, self.idle_seconds)

    def client_connected(self, client: connection.Client) -> None:
        address = str(client.peername[0])
        if self._open[address] >= self.max_per_client:
            client.error = f"more than {self.max_per_client} connections from {address}"
            self.count("connections_refused")
            log.debug("refused a connection: %s", client.error)
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
