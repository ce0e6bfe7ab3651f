"""The sd_notify protocol, by hand: one datagram on the Unix socket named in $NOTIFY_SOCKET.

systemd (Type=notify) hands the service a socket path in $NOTIFY_SOCKET; a name starting with
"@" is in the abstract namespace (a leading NUL byte). Each message is one datagram of
newline-separated KEY=VALUE lines: READY=1 once the service is up, STATUS=<one line> for
`systemctl status`, WATCHDOG=1 at least every $WATCHDOG_USEC microseconds, STOPPING=1 when the
service begins to shut down. Outside systemd every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("instafly.sdnotify")


def notify_socket_address(value: str | None) -> str | bytes | None:
    """The address to send to: a filesystem path, or bytes for an abstract ("@") name."""
    if not value or value[0] not in "/@":
        return None
    if value[0] == "@":
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half the timeout), or None when no watchdog is asked.

    $WATCHDOG_PID, when set, names the process the watchdog is meant for; another process
    (a child that inherited the environment) must not ping.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000 / 2


class Notifier:
    """Sends sd_notify messages to systemd, if systemd is listening."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = notify_socket_address(env.get("NOTIFY_SOCKET"))
        self.watchdog_every = watchdog_interval(env)
        self._last_watchdog = 0.0
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram of KEY=VALUE lines; False when there is no socket or it failed."""
        if self.address is None:
            return False
        message = "\n".join(lines).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        self._last_status = status
        return self.send("READY=1", f"STATUS={_one_line(status)}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> bool:
        """Update the status line; repeated identical lines are not sent again."""
        if text == self._last_status:
            return False
        self._last_status = text
        return self.send(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        """The config is being reloaded; READY=1 follows once the daemon runs again."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the config")

    def stopping(self, status: str) -> bool:
        self._last_status = status
        return self.send("STOPPING=1", f"STATUS={_one_line(status)}")

    def watchdog(self, now: float | None = None) -> bool:
        """Ping the watchdog if half its timeout has passed since the last ping."""
        if self.watchdog_every is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_watchdog < self.watchdog_every:
            return False
        self._last_watchdog = now
        return self.send("WATCHDOG=1")


def _one_line(text: str) -> str:
    return " ".join(text.split())
