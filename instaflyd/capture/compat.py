"""What differs between the mitmproxy and Python releases Instafly runs on, in one place.

Instafly supports Python 3.11 to 3.13; pip picks mitmproxy 11 on 3.11 and mitmproxy 12 on 3.12
and later (`requirements/lock-py3.X.txt` pins each). Everything else in `capture` is written
against what both have; the differences are answered here, by looking at what the installed
release has (never by comparing version numbers):

- **The idle timeout.** mitmproxy 11 closes a connection without traffic after the module
  constant `mitmproxy.proxy.server.TCP_TIMEOUT` (read as each connection starts); mitmproxy 12
  replaced it with the option `tcp_timeout`. `set_idle_timeout` uses the option where it exists
  and the constant otherwise; `idle_timeout` reads back what connections will get.
- **Python 3.13's bind error.** asyncio's "error while attempting to bind" now repeats the inner
  error with its number (`... ('127.0.0.1', 8080): [errno 98] address already in use`);
  `plain_os_error` takes that inner number out, so the one-line start-up error reads the same
  on every Python.
"""

from __future__ import annotations

import re

from mitmproxy import options
from mitmproxy.proxy import server
from mitmproxy.version import VERSION as MITMPROXY_VERSION

TCP_TIMEOUT_OPTION = "tcp_timeout"  # mitmproxy 12 and later

__all__ = ["MITMPROXY_VERSION", "idle_timeout", "plain_os_error", "set_idle_timeout"]


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


_INNER_ERRNO = re.compile(r"\[errno \d+\] ")  # lower case: Python 3.13's inner error


def plain_os_error(message: str) -> str:
    """`message` without the inner "[errno N] " Python 3.13 adds to asyncio's bind errors (the
    outer "[Errno N]", the same on every Python, stays)."""
    return _INNER_ERRNO.sub("", message)
