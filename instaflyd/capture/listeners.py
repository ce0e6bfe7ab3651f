"""The proxy's WireGuard listeners follow the phones in the store, within seconds.

"Add a phone" on the page writes a device to the store; "Remove" revokes it. This addon reads
the store as the proxy starts running and then every `RELOAD_SECONDS` (off the event loop) and,
when the set of devices changed, rewrites the listener files and sets mitmproxy's `mode`
option: mitmproxy then starts the new listeners and stops the removed ones, so a removed phone's
packets find no listener at once, while the Wi-Fi proxy and the other phones' listeners go on
untouched. A store that cannot be read leaves the listeners as they are (logged once).

The phones' listeners are added only once the proxy runs, never in its start-up: a phone's
listener that cannot start (another program holds its UDP port) must not keep the Wi-Fi proxy
and the other phones from starting. It is tried again at each tick, and reported to the repairs
list (`proxy.wireguard_port`) until it runs: that phone cannot connect, and the page says so.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx

from instaflyd import repairs
from instaflyd.capture.wireguard import active_devices, listener_modes
from instaflyd.config import Config
from instaflyd.store import Database
from instaflyd.store.devices import WireGuardDevice

log = logging.getLogger("instafly.proxy")

RELOAD_SECONDS = 2.0
PORT_PROBLEM = "proxy.wireguard_port"


def base_modes(config: Config) -> list[str]:
    """The listeners that do not depend on the phones: the Wi-Fi (or transparent) proxy."""
    proxy = config.proxy
    if proxy.mode == "wireguard":
        return []
    return [f"{proxy.mode}@{proxy.listen_port}"]


def read_devices(config: Config) -> list[WireGuardDevice]:
    with Database(config.db_path) as db:
        return active_devices(db.conn, config)


def all_modes(config: Config, devices: list[WireGuardDevice]) -> list[str]:
    return base_modes(config) + listener_modes(config, devices)


def _signature(devices: list[WireGuardDevice]) -> list[tuple[int, int, str]]:
    return [(d.id, d.port, d.device_private_key) for d in devices]


class DeviceListeners:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._current: list[tuple[int, int, str]] | None = None  # nothing applied yet
        self._task: asyncio.Task[None] | None = None
        self._reported = False
        self._store_failing = False  # logged once when it starts failing, once when it heals

    def running(self) -> None:
        if self.config.wireguard.enabled:
            self._task = asyncio.get_running_loop().create_task(self._follow_the_store())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _follow_the_store(self) -> None:
        while True:
            try:
                await self.reload()
            except Exception as exc:  # a busy or broken store: the listeners stay as they are
                if not self._store_failing:
                    log.warning("cannot read the phones from the store (trying again): %s", exc)
                self._store_failing = True
            else:
                if self._store_failing:
                    log.info("the phones are read from the store again")
                self._store_failing = False
            try:
                await self.restart_stopped()
            except Exception:
                log.exception("cannot check the WireGuard listeners")
            await asyncio.sleep(RELOAD_SECONDS)

    async def restart_stopped(self) -> list[int]:
        """Start again the phones' listeners that are not running; report the ports still
        down (and resolve the report once none is). Returns those ports (none while mitmproxy
        is changing its listeners: the report stays as it was until the next tick)."""
        proxyserver = ctx.master.addons.get("proxyserver")
        await asyncio.sleep(0)  # let a change of listeners just asked for begin
        if proxyserver.servers.is_updating:
            return []  # mitmproxy is starting or stopping listeners: look again next tick
        down = [
            server
            for server in list(proxyserver.servers)
            if getattr(server.mode, "type_name", "") == "wireguard" and not server.is_running
        ]
        for server in down:
            try:
                await server.start()
            except Exception as exc:
                log.debug("WireGuard listener %s still down: %s", server.mode.full_spec, exc)
        ports = sorted(int(s.mode.listen_port() or 0) for s in down if not s.is_running)
        if ports:
            repairs.report(
                PORT_PROBLEM,
                "error",
                f"{len(ports)} phone(s) cannot connect through WireGuard: the box cannot listen"
                f" on UDP port {', '.join(map(str, ports))}.",
                "Another program uses the port: stop it, or set wireguard.port to free ports."
                " The box tries again by itself every few seconds.",
                title="A phone's WireGuard port is taken",
            )
            self._reported = True
        elif self._reported:
            repairs.resolve(PORT_PROBLEM)
            self._reported = False
        return ports

    async def reload(self) -> bool:
        """Apply the store's devices; True if the listeners changed."""
        devices = await asyncio.to_thread(read_devices, self.config)
        if _signature(devices) == self._current:
            return False
        modes = await asyncio.to_thread(all_modes, self.config, devices)
        if list(ctx.options.mode) != modes:
            ctx.options.update(mode=modes)
        first, self._current = self._current is None, _signature(devices)
        if first and not devices:
            return False
        log.info("WireGuard listeners: %d phone(s) on UDP %s", len(devices),
                 ", ".join(str(d.port) for d in devices) or "none")  # fmt: skip
        return True
