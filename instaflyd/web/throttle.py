"""Slowing down password guessing, per client, on the log-in form and HTTP basic auth alike.

Each client (an IPv4 address, or an IPv6 /64, since one device can take many addresses there:
`instaflyd.clients.client_key`) gets FREE_TRIES wrong passwords; after that each further one
makes it wait twice as long as the last (1 s, 2 s, 4 s ... up to MAX_DELAY). While a client
must wait, its attempts are refused at once (429 with Retry-After) without even checking the
password, so a burst of guesses gets a handful checked, and no request thread is held up by a
sleep. Other clients are not affected; the right password works again for the same client once
its wait is over, and resets its count.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from instaflyd.clients import client_key

FREE_TRIES = 5
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
FORGET_AFTER = 3600.0  # a client with no wrong password for an hour starts afresh
MAX_CLIENTS = 10_000  # memory bound: the least recently seen client is forgotten beyond this


@dataclass
class _Failures:
    count: int
    wait_until: float
    last: float


class LoginThrottle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, _Failures] = OrderedDict()
        self.refused = 0  # attempts turned away while their client had to wait

    def attempt(self, address: str | None, now: float | None = None) -> float:
        """0 if this client may try a password now (the try is counted as wrong until
        `succeeded` says otherwise, so concurrent tries cannot slip past the delay), else how
        many seconds it must still wait; such an attempt is refused and counted."""
        now = time.monotonic() if now is None else now
        key = client_key(address)
        with self._lock:
            failures = self._clients.pop(key, None)
            if failures is None or now - failures.last > FORGET_AFTER:
                failures = _Failures(0, now, now)
            self._clients[key] = failures  # most recently seen last
            wait = failures.wait_until - now
            if wait > 0:
                self.refused += 1
                return wait
            failures.count += 1
            failures.last = now
            beyond = failures.count - FREE_TRIES
            if beyond > 0:
                failures.wait_until = now + min(MAX_DELAY, FIRST_DELAY * 2 ** (beyond - 1))
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
            return 0.0

    def succeeded(self, address: str | None) -> None:
        with self._lock:
            self._clients.pop(client_key(address), None)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
