"""The box's address on the home network, as a phone would type it into its proxy settings."""

from __future__ import annotations

import functools
import ipaddress
import socket
import time

# A documentation address (TEST-NET-1): connecting a UDP socket to it only asks the kernel
# which source address it would use; no packet is ever sent.
_PROBE_ADDRESS = ("192.0.2.1", 9)
_WILDCARDS = ("", "0.0.0.0", "::")


def lan_address(listen_host: str = "0.0.0.0") -> str:
    """The address phones should use: the listen address if specific, else the LAN address."""
    if listen_host not in _WILDCARDS:
        return listen_host
    return _routed_address(int(time.monotonic() // 60))  # looked up at most once a minute


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


@functools.lru_cache(maxsize=1)
def _routed_address(_minute: int) -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_PROBE_ADDRESS)
            return str(probe.getsockname()[0])
    except OSError:
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
