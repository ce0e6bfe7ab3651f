"""What differs between the mitmproxy and Python releases Instafly runs on, in one place.

Instafly supports Python 3.11 to 3.13; pip picks mitmproxy 11 on 3.11 and mitmproxy 12 on 3.12
and later (`requirements/lock-py3.X.txt` pins each). Everything else in `capture` is written
against what both have; the differences are answered here, by looking at what the installed
release has (never by comparing version numbers):

- **The idle timeout.** mitmproxy 11 closes a connection without traffic after the module
  constant `mitmproxy.proxy.server.TCP_TIMEOUT` (read as each connection starts); mitmproxy 12
  replaced it with the option `tcp_timeout`. `set_idle_timeout` uses the option where it exists
  and the constant otherwise; `idle_timeout` reads back what connections will get.
- **Closing another connection.** mitmproxy gives an addon no hook to close a connection other
  than the one a hook is about. Its `proxyserver` addon keeps every open connection's handler
  by client id (`connections`), with its inactivity watchdog (`timeout_watchdog.last_activity`)
  and the task reading from the client (`transports[client].handler`), which mitmproxy's own
  watchdog cancels to close an idle connection; `last_activity` and `close_connection` do the
  same, and answer None/False where a release keeps them elsewhere (then nothing is evicted and
  the limits only refuse, as before).
- **A connection closed but not yet disconnected.** mitmproxy marks a connection CLOSED the
  moment it closes it (`ConnectionState`, the same in 11 and 12), but calls
  `client_disconnected` only once the connection's handler has unwound, a few turns of the event
  loop later. A phone whose connection the proxy closed (after an HTTP/1.0 answer, say) connects
  again at once, and on mitmproxy 12 / Python 3.13 that connection's `client_connected` comes
  first every time (on 11 / 3.11 it came after, by luck of the scheduling); `is_closed` tells
  such a connection from an open one, so it is not counted against its device.
- **Python 3.13's bind error.** asyncio's "error while attempting to bind" now repeats the inner
  error with its number (`... ('127.0.0.1', 8080): [errno 98] address already in use`);
  `plain_os_error` takes that inner number out, so the one-line start-up error reads the same
  on every Python.
"""

from __future__ import annotations

import re
from typing import Any

from mitmproxy import connection, ctx, options
from mitmproxy.proxy import server
from mitmproxy.version import VERSION as MITMPROXY_VERSION

TCP_TIMEOUT_OPTION = "tcp_timeout"  # mitmproxy 12 and later

__all__ = [
    "MITMPROXY_VERSION",
    "close_connection",
    "idle_timeout",
    "is_closed",
    "last_activity",
    "plain_os_error",
    "set_idle_timeout",
]


def has_tcp_timeout_option(opts: options.Options) -> bool:
    return TCP_TIMEOUT_OPTION in opts


def set_idle_timeout(opts: options.Options, seconds: float) -> int:
    """Close connections idle this long (whole seconds, at least 1); returns what was set."""
    whole = max(1, round(seconds))
    if has_tcp_timeout_option(opts):
        opts.update(**{TCP_TIMEOUT_OPTION: whole})
    else:
        vars(server)["TCP_TIMEOUT"] = whole  # mitmproxy 11 (12 has no such name)
    return whole


def idle_timeout(opts: options.Options) -> int:
    """The idle timeout a new connection gets, in seconds."""
    if has_tcp_timeout_option(opts):
        return int(getattr(opts, TCP_TIMEOUT_OPTION))
    return int(vars(server)["TCP_TIMEOUT"])  # mitmproxy 11


def _handler(client_id: str) -> Any:
    """mitmproxy's handler of the open connection of this client, or None."""
    try:
        proxyserver = ctx.master.addons.get("proxyserver")
    except AttributeError:  # no master (a test harness without one)
        return None
    connections = getattr(proxyserver, "connections", None)
    return connections.get(client_id) if isinstance(connections, dict) else None


def last_activity(client_id: str) -> float | None:
    """When the connection of this client last carried a byte either way (`time.time()`), or
    None when mitmproxy does not know it (closed, or another release)."""
    watchdog = getattr(_handler(client_id), "timeout_watchdog", None)
    when = getattr(watchdog, "last_activity", None)
    return float(when) if isinstance(when, (int, float)) else None


def close_connection(client_id: str, reason: str) -> bool:
    """Close the open connection of this client as mitmproxy's inactivity watchdog does (its
    reading task is cancelled; `client_disconnected` follows); False when it cannot be found."""
    handler = _handler(client_id)
    try:
        task = handler.transports[handler.client].handler
    except (AttributeError, KeyError, TypeError):
        return False
    if task is None or task.done():
        return False
    task.cancel(reason)
    return True


def is_closed(conn: connection.Connection) -> bool:
    """Has mitmproxy closed this connection both ways (its disconnect hook may still be to
    come)? A half-closed one is still open: its other direction can hold it for as long."""
    return conn.state == connection.ConnectionState.CLOSED


_INNER_ERRNO = re.compile(r"\[errno \d+\] ")  # lower case: Python 3.13's inner error


def plain_os_error(message: str) -> str:
    """`message` without the inner "[errno N] " Python 3.13 adds to asyncio's bind errors (the
    outer "[Errno N]", the same on every Python, stays)."""
    return _INNER_ERRNO.sub("", message)
