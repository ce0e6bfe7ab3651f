"""What counts as one client of the box, for every budget kept per client.

A device on the LAN can take many addresses: on IPv6 a whole /64 is its own to choose from
(privacy addresses, or any it likes), so a budget kept per address would give it as many
shares as it takes addresses. `client_key` maps an address to the key a budget is kept under:

- IPv4: the address itself;
- IPv6: its /64 (`2001:db8:1:2::/64`), the smallest block a LAN hands a device;
- IPv4-mapped IPv6 (`::ffff:192.0.2.7`, what a dual-stack socket sees of an IPv4 client): the
  IPv4 address, so the same device counts the same whichever socket it reached;
- IPv6 link-local (`fe80::/10`): the address itself, not its /64, because every device on the
  link has its link-local address in the same fe80::/64, and one key for all of them would let
  a single device use up everybody's share;
- anything that is not an address (a Unix socket's name, nothing): itself, or "unknown".

The page's connection budget and password throttle and the proxy's connection limits all ask
it. Standard library only; cached, because each new connection asks it for every open one.
"""

from __future__ import annotations

import functools
import ipaddress

IPV6_CLIENT_PREFIX = 64
UNKNOWN = "unknown"
_LINK_LOCAL = ipaddress.ip_network("fe80::/10")


@functools.lru_cache(maxsize=8192)
def client_key(address: str | None) -> str:
    """The key of the client at `address` (see the module's docstring)."""
    if not address:
        return UNKNOWN
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        if parsed in _LINK_LOCAL:
            return str(parsed)
        return str(ipaddress.IPv6Network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(parsed)
