"""Which hosts are Instagram's: the only ones the proxy decrypts and the capture reads.

A host name a client writes (the Host header, the SNI) only says where the client *wants* to go;
capture believes a name only when the upstream server proved it with a certificate mitmproxy
verified (`certificate_covers`, used by `flows.verified_host`).

`ALLOW_HOSTS` is mitmproxy's `allow_hosts` option. mitmproxy 11 matches each pattern with
`re.search` against "host:port" strings (the SNI, the Host header and the server address), so
the patterns are anchored at both ends: `instagram.com.example.net` must not match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Hosts that serve Instagram's pages and JSON (www., i., the bare domain, ...).
API_DOMAINS = ("instagram.com",)
# Hosts that serve Instagram's images and videos.
CDN_DOMAINS = ("cdninstagram.com", "fbcdn.net")
# mitmproxy's own onboarding site (http://mitm.it serves the CA certificate to phones); it never
# reaches the internet.
ONBOARDING_HOST = "mitm.it"


def _domain_pattern(domain: str) -> str:
    return rf"^(?:[a-z0-9-]+\.)*{re.escape(domain)}:\d+$"


ALLOW_HOSTS: list[str] = [
    *(_domain_pattern(domain) for domain in (*API_DOMAINS, *CDN_DOMAINS)),
    rf"^{re.escape(ONBOARDING_HOST)}:\d+$",
]


def _under(host: str, domains: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def is_api_host(host: str) -> bool:
    """www.instagram.com, i.instagram.com, instagram.com, ..."""
    return _under(host, API_DOMAINS)


def is_cdn_host(host: str) -> bool:
    """*.cdninstagram.com and *.fbcdn.net (where post images come from)."""
    return _under(host, CDN_DOMAINS)


def is_instagram_host(host: str) -> bool:
    return is_api_host(host) or is_cdn_host(host)


def certificate_covers(dns_names: Iterable[str], host: str) -> bool:
    """Does a certificate with these DNS names serve `host`? (RFC 6125: a wildcard stands for
    exactly one whole label, and only as the leftmost label.)"""
    host = host.lower().rstrip(".")
    for name in dns_names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == name[2:] and "*" not in rest:
                return True
    return False
