"""The proxy's limits on client connections: one LAN device, nor a crowd of them, cannot hold
hundreds of sockets.

mitmproxy has no option for the first limit, so this small addon keeps it, and sets the second:

- at most `max_per_client` connections open at once from one client (an IPv4 address, or an IPv6
  /64, which one device can fill with addresses: `instaflyd.clients.client_key`; "an address"
  below means such a client), and `max_total` from all of them (`proxy.max_connections`, lowered
  to what the process's file descriptors allow: each connection can take two, the client's and
  the server's). A connection beyond a limit is closed as it arrives (setting `client.error` in
  `client_connected` is mitmproxy's documented way to kill a connection) and counted as
  `connections_refused`;
- once three quarters of the total are open (near full), an address holding SMALL_CLIENT
  connections or more may open no more, and each new connection of an address holding fewer
  (a household's phone, or a newcomer) makes room: the longest-idle connection of the
  addresses holding the most (at least SMALL_CLIENT, and more than the newcomer) is closed,
  counted as `connections_evicted`. So a crowd that took the connections first is pushed back
  as soon as others want in, and the household's devices with few connections keep theirs.
  When all are open (every address then holds fewer than SMALL_CLIENT: it takes
  max_total / 3 addresses, 667 with the defaults), a newcomer still gets in if the addresses
  holding the most hold at least two more than it, or any when it holds none: their
  longest-idle connection is closed (`fair_floor`). So a device holding none always gets
  one, however many addresses hold one each; a crowd can only take turns. mitmproxy gives an
  addon no call to close another connection, so `compat.close_connection` does what its
  inactivity watchdog does. A connection mitmproxy has closed already stops counting at once,
  before its `client_disconnected` (`compat.is_closed`): a phone reconnecting after the proxy
  closed its connection is not refused for the one that is going;
- a connection without traffic in either direction for `idle_seconds` is closed by mitmproxy's
  own inactivity watchdog (10 minutes unless told): `running` sets its delay from the config,
  through `compat.set_idle_timeout` (an option in mitmproxy 12, a module constant in 11).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from mitmproxy import connection, ctx

from instaflyd.capture.compat import close_connection, is_closed, last_activity, set_idle_timeout
from instaflyd.clients import client_key
from instaflyd.fdlimit import fair_floor

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
        self._admitted: dict[str, connection.Client] = {}  # id -> the connections in _open
        self._ids: dict[str, set[str]] = {}  # address -> ids of its connections
        self.refused = 0
        self.evicted = 0

    def running(self) -> None:
        set_idle_timeout(ctx.options, self.idle_seconds)

    def client_connected(self, client: connection.Client) -> None:
        address = _key(client)
        near_full = len(self._admitted) >= self.max_total * 3 // 4
        if near_full or self._open[address] >= self.max_per_client:
            self._forget_closed(self._ids.get(address, ()))  # its own going ones are not held
        held, total = self._open[address], len(self._admitted)
        if held >= self.max_per_client:
            client.error = f"more than {self.max_per_client} connections from {address}"
        elif near_full and held >= SMALL_CLIENT:
            client.error = (
                f"{total} of the proxy's {self.max_total} connections are open; the rest are"
                f" kept for devices with fewer than {SMALL_CLIENT} ({address} has {held})"
            )
        elif near_full:
            full = total >= self.max_total
            if not self._make_room(held, full) and full:
                client.error = f"all {self.max_total} connections of the proxy are open"
        if client.error:
            self.count("connections_refused")
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warning("refused a connection: %s (%d so far)", client.error, self.refused)
            return
        self._open[address] += 1
        self._ids.setdefault(address, set()).add(client.id)
        self._admitted[client.id] = client

    def _forget_closed(self, client_ids: Iterable[str]) -> int:
        """Stop counting the connections mitmproxy has closed already: it calls
        `client_disconnected` only once their handler has unwound, and a device's next
        connection (a phone reconnecting after the proxy closed its last one) may arrive first
        (`compat.is_closed`). Returns how many."""
        closed = [c for c in client_ids if is_closed(self._admitted[c])]
        for client_id in closed:
            self._forget(client_id)
        return len(closed)

    def _make_room(self, held: int, full: bool) -> bool:
        """Close the longest-idle connection of the addresses holding the most, when they hold
        more than the newcomer (who holds `held`) and at least SMALL_CLIENT; when the proxy is
        full, when they hold more than `fair_floor(held)`. True if one was closed, or if a
        connection mitmproxy closed already made the room (none is closed for it then)."""
        if not self._open:
            return False
        most = max(self._open.values())
        if most <= (fair_floor(held) if full else max(held, SMALL_CLIENT - 1)):
            return False
        if self._forget_closed(self._admitted):  # only now: it looks at every connection
            return True
        holders = [address for address, count in self._open.items() if count == most]
        candidates = [client_id for address in holders for client_id in self._ids[address]]
        for client_id in sorted(candidates, key=self._idle_since):
            address = _key(self._admitted[client_id])
            if close_connection(client_id, "evicted"):
                self._forget(client_id)
                self.evicted += 1
                self.count("connections_evicted")
                if self.evicted == 1 or self.evicted % 100 == 0:
                    log.warning(
                        "the proxy is near its %d connections: closed an idle one of %s,"
                        " which held %d (%d closed so far)",
                        self.max_total, address, most, self.evicted,
                    )  # fmt: skip
                return True
        return False

    def _idle_since(self, client_id: str) -> float:
        when = last_activity(client_id)
        return when if when is not None else float("inf")  # unknown: not closable anyway

    def _forget(self, client_id: str) -> None:
        client = self._admitted.pop(client_id, None)
        if client is None:
            return
        address = _key(client)
        self._ids.get(address, set()).discard(client_id)
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]
            self._ids.pop(address, None)

    def client_disconnected(self, client: connection.Client) -> None:
        self._forget(client.id)

    def open_connections(self, address: str) -> int:
        """How many connections the client at `address` (its IPv6 /64 ...) holds."""
        return self._open[client_key(address)]


def _key(client: connection.Client) -> str:
    """The client a connection belongs to: its IPv4 address, or its IPv6 /64 (`client_key`)."""
    return client_key(str(client.peername[0]))
