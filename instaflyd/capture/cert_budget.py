"""A budget for the certificates the proxy makes up: a client chooses the name it sends.

mitmproxy signs a certificate for every name it intercepts, and `allow_hosts` lets through
any `*.instagram.com`, so a LAN device sending 1,000 random names made 1,000 certificates
(and 1,000 rows of TLS failures). A name seen before is always intercepted; at most NEW_NAMES
names the proxy has not seen are intercepted per WINDOW_SECONDS, and a connection naming yet
another is passed through encrypted and unchanged (`ignore_connection`, mitmproxy's documented
way), counted as `certificates_refused`. The household's phones use a few dozen Instagram
names, learned in their first minutes and kept (the last KNOWN_NAMES).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from mitmproxy import tls

log = logging.getLogger("instafly.proxy")

NEW_NAMES = 64
WINDOW_SECONDS = 600.0
KNOWN_NAMES = 1000


class CertificateBudget:
    def __init__(self, count: Callable[[str], None]) -> None:
        self.count = count
        self.known: OrderedDict[str, None] = OrderedDict()
        self.new_at: deque[float] = deque()
        self.refused = 0

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        try:
            if data.ignore_connection:
                return
            name = (data.client_hello.sni or "").lower()
            if not name or name in self.known:
                if name:
                    self.known.move_to_end(name)
                return
            now = time.monotonic()
            while self.new_at and now - self.new_at[0] > WINDOW_SECONDS:
                self.new_at.popleft()
            if len(self.new_at) >= NEW_NAMES:
                data.ignore_connection = True
                self.refused += 1
                self.count("certificates_refused")
                if self.refused == 1 or self.refused % 100 == 0:
                    log.warning(
                        "%d new names in %.0f minutes: %s passes through undecrypted"
                        " (%d so far)",
                        NEW_NAMES, WINDOW_SECONDS / 60, name[:80], self.refused,
                    )  # fmt: skip
                return
            self.new_at.append(now)
            self.known[name] = None
            while len(self.known) > KNOWN_NAMES:
                self.known.popitem(last=False)
        except Exception:
            log.exception("certificate budget: cannot read a client hello")
