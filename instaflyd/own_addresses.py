"""The addresses that mean this box itself: its interfaces' addresses, loopback, "this host"
(0.0.0.0 and ::, which reach the box when connected to) and link-local ones.

The page uses `interface_addresses` to know its own names (DNS rebinding); the proxy uses
`is_this_box` to refuse connecting anywhere on the box, so a LAN device cannot use it to reach
a service that listens on loopback only (the page bound to 127.0.0.1, a database, an admin
port). Standard library only; the interfaces are read from Linux's /proc.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path

FIB_TRIE = Path("/proc/self/net/fib_trie")  # under /proc/self: visible with ProcSubset=pid too
IF_INET6 = Path("/proc/self/net/if_inet6")
REFRESH_SECONDS = 10.0  # interfaces come and go (DHCP, WireGuard): read them again this often

_ALWAYS_THE_BOX = (
    ipaddress.ip_network("127.0.0.0/8"),  # loopback
    ipaddress.ip_network("0.0.0.0/8"),  # "this host": connecting to 0.0.0.0 reaches the box
    ipaddress.ip_network("169.254.0.0/16"),  # link-local (and cloud metadata services)
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("fe80::/10"),  # link-local
)


def interface_addresses() -> set[str]:
    """Every IPv4 and IPv6 address of this box's interfaces (Linux /proc), as text."""
    addresses: set[str] = set()
    try:
        previous = ""
        for line in FIB_TRIE.read_text().splitlines():
            text = line.strip()
            if text.startswith(("|--", "+--")):
                previous = text[3:].strip().split("/")[0]
            elif text == "/32 host LOCAL" and previous:
                addresses.add(previous)
    except OSError:
        pass
    try:
        for line in IF_INET6.read_text().splitlines():
            raw = line.split()[0]
            addresses.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    except (OSError, ValueError, IndexError):
        pass
    return addresses


class TheBox:
    """Tells whether an IP address is this box; its interface addresses are re-read now and
    then. Safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._own: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self._read_at = -REFRESH_SECONDS

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False  # not an address (a name): resolve it first
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in _ALWAYS_THE_BOX if network.version == ip.version):
            return True
        return ip in self._addresses()

    def _addresses(self) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= REFRESH_SECONDS:
                self._own = {ipaddress.ip_address(a) for a in interface_addresses()}
                self._read_at = now
            return self._own
