"""Which names the page answers to: a defence against DNS rebinding and cross-site requests.

A web site open in a household member's browser can point a name it controls at the box's LAN
address (DNS rebinding) and then read the page as if it were its own; the browser sends that
name in `Host:`. So every request's `Host:` must be one of the box's own names or addresses:
`localhost`, a loopback address, an address of one of the box's interfaces, its host name (and
`<hostname>.local`), or a name in `web.allowed_hosts`. Anything else gets 421 before any route
runs.

A state-changing request (POST, PUT, PATCH, DELETE) from a browser also says where the page that
sent it came from (`Origin:`, or at least `Referer:`): it must be the box too. A request with
neither comes from a script, which still needs the password and the CSRF token.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, request

from instaflyd.network import lan_address
from instaflyd.own_addresses import interface_addresses

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFRESH_SECONDS = 60.0  # interface addresses change (DHCP); looked up again at most this often
MISS_REFRESH_SECONDS = 5.0  # an unknown address literal triggers an early look-up, this rarely
WILDCARDS = ("", "0.0.0.0", "::")


def split_host(host_header: str) -> str:
    """The name or address of a `Host:` value, without port or brackets, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class OwnNames:
    """The set of names and addresses that mean this box; addresses are refreshed now and then."""

    def __init__(self, allowed_hosts: Iterable[str] = (), listen_host: str = "0.0.0.0") -> None:
        hostname = socket.gethostname().lower()
        self.names = {"localhost", hostname, f"{hostname}.local"}
        self.names.update(split_host(name) for name in allowed_hosts)
        if listen_host not in WILDCARDS:
            self.names.add(split_host(listen_host))
        self._addresses: set[str] = set()
        self._looked_up = float("-inf")
        self._lock = threading.Lock()

    def addresses(self, *, missed: bool = False) -> set[str]:
        now = time.monotonic()
        age = now - self._looked_up
        if age > REFRESH_SECONDS or (missed and age > MISS_REFRESH_SECONDS):
            with self._lock:
                found = interface_addresses()
                found.add(lan_address())
                self._addresses = found
                self._looked_up = now
        return self._addresses

    def __contains__(self, host: str) -> bool:
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host in self.names
        if address.is_loopback:
            return True
        text = str(address)
        return text in self.addresses() or text in self.addresses(missed=True)


def install(app: Flask, own: OwnNames) -> None:
    """Check `Host:` on every request and `Origin:`/`Referer:` on state-changing ones."""

    def check() -> Response | None:
        if split_host(request.headers.get("Host", "")) not in own:
            return _refuse(
                421,
                "This page answers only to the box's own names and addresses. To reach it by "
                "another name, add that name to web.allowed_hosts in the config.\n",
            )
        if request.method in STATE_CHANGING and not _same_site(own):
            return _refuse(403, "Refused: the request came from a page of another site.\n")
        return None

    app.before_request(check)


def _same_site(own: OwnNames) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return True  # not a browser: scripts still need the password and the CSRF token
        origin = referer
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return False  # includes "null", which sandboxed frames and some redirects send
    return split_host(parts.netloc.rsplit("@", 1)[-1]) in own


def _refuse(code: int, message: str) -> Response:
    return Response(message, code, mimetype="text/plain")
