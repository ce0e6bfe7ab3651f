"""The proxy never connects to the box itself.

A LAN device could otherwise use the proxy as a way into the box: `curl -x box:8080
http://127.0.0.1:8081/` reaches the page even when it listens on loopback only (and any other
loopback-only service), and the page then sees 127.0.0.1 as the client, so the password
throttle charges the box's own local user. In every mode (regular, transparent, WireGuard,
where the destination is whatever address a packet names), each server connection is checked
in `server_connect`, before it is opened: the host is resolved here, and the connection is
refused if any address is the box's (`instaflyd.own_addresses.TheBox`: loopback, "this host",
link-local, every interface address). A name is then connected to by the address that was
checked, never looked up a second time, so a name that rebinds to 127.0.0.1 between the check
and the connection cannot slip through. Refusals are counted (`connections_to_the_box`) and
logged with the real client's address.

The exceptions are what the administrator chose: the ports in `proxy.box_ports_allowed`, and a
destination named by a `map_remote` rule in `proxy.mitmproxy_options` (an upstream that runs
on the box itself).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from mitmproxy import ctx
from mitmproxy.proxy import server_hooks

from instaflyd.own_addresses import TheBox

log = logging.getLogger("instafly.proxy")


class BoxGuard:
    def __init__(
        self,
        count: Callable[[str], None],
        ports_allowed: Iterable[int] = (),
        box: TheBox | None = None,
    ) -> None:
        self.count = count
        self.ports_allowed = frozenset(ports_allowed)
        self.box = box or TheBox()
        self.refused = 0
        self.chosen: set[tuple[str, int]] = set()  # map_remote's destinations

    def configure(self, updated: set[str]) -> None:
        if "map_remote" in updated:
            self.chosen = mapped_destinations(ctx.options.map_remote)

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        try:
            await self._check(data)
        except Exception:
            log.exception("cannot check a server connection; refused")
            data.server.error = "refused: its address could not be checked"

    async def _check(self, data: server_hooks.ServerConnectionHookData) -> None:
        if not data.server.address:
            return
        host, port = str(data.server.address[0]), int(data.server.address[1])
        if (host, port) in self.chosen or port in self.ports_allowed:
            return
        kind = socket.SOCK_DGRAM if data.server.transport_protocol == "udp" else socket.SOCK_STREAM
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=kind)
        except OSError:
            return  # mitmproxy's own connect fails the same way and says so
        addresses = [str(info[4][0]) for info in found]
        own = next((address for address in addresses if address in self.box), None)
        if own is not None:
            self.refused += 1
            self.count("connections_to_the_box")
            client = data.client.peername[0] if data.client.peername else "(unknown)"
            data.server.error = f"refused: {host} is this box ({own})"
            log.warning(
                "refused a connection from %s to %s port %d: that is this box (%s)",
                client, host, port, own,
            )  # fmt: skip
            return
        if addresses and host not in addresses:
            data.server.address = (addresses[0], port)  # the address checked, not a new lookup


def mapped_destinations(specs: Iterable[str]) -> set[tuple[str, int]]:
    """The (host, port) each `map_remote` rule ("|filter|regex|replacement", any separator)
    sends requests to, where its replacement names one."""
    found = set()
    for spec in specs:
        parts = spec[1:].split(spec[:1]) if spec else []
        if not parts:
            continue
        try:
            url = urlsplit(parts[-1])
            if url.hostname:
                found.add((url.hostname, url.port or (443 if url.scheme == "https" else 80)))
        except ValueError:
            continue
    return found
