"""The proxy's WireGuard listeners follow the phones in the store, within seconds.

"Add a phone" on the page writes a device to the store; "Remove" revokes it. This addon reads
the store every `RELOAD_SECONDS` (off the event loop) and, when the set of devices changed,
rewrites the listener files and sets mitmproxy's `mode` option: mitmproxy then starts the new
listeners and stops the removed ones, so a removed phone's packets find no listener at once,
while the Wi-Fi proxy and the other phones' listeners go on untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mitmproxy import ctx

from instaflyd.capture.wireguard import active_devices, listener_modes
from instaflyd.config import Config
from instaflyd.store import Database
from instaflyd.store.devices import WireGuardDevice

log = logging.getLogger("instafly.proxy")

RELOAD_SECONDS = 2.0


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
    def __init__(self, config: Config, devices: list[WireGuardDevice]) -> None:
        self.config = config
        self._current = _signature(devices)
        self._task: asyncio.Task[None] | None = None

    def running(self) -> None:
        if self.config.wireguard.enabled:
            self._task = asyncio.get_running_loop().create_task(self._follow_the_store())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _follow_the_store(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            try:
                await self.reload()
            except Exception as exc:  # a busy or broken store: try again later
                log.warning("cannot read the phones from the store: %s", exc)

    async def reload(self) -> bool:
        """Apply the store's devices; True if the listeners changed."""
        devices = await asyncio.to_thread(read_devices, self.config)
        if _signature(devices) == self._current:
            return False
        modes = await asyncio.to_thread(all_modes, self.config, devices)
        with contextlib.suppress(AttributeError):
            if list(ctx.options.mode) == modes:
                self._current = _signature(devices)
                return False
        ctx.options.update(mode=modes)
        self._current = _signature(devices)
        log.info("WireGuard listeners: %d phone(s) on UDP %s", len(devices),
                 ", ".join(str(d.port) for d in devices) or "none")  # fmt: skip
        return True
