"""The mitmproxy addon: classify Instagram responses and hand them to the writer process.

The hooks run on mitmproxy's event loop, so they only look at the flow's host, path, status and
content type and pass the body on; parsing, Pillow and SQLite happen in the writer process. No
hook ever raises into mitmproxy: a failure is logged and the flow goes on untouched.

Only a response that verifiably came from Instagram over TLS is captured (`verified_host`); one
that merely names an Instagram host (plain HTTP, a forged Host header, a non-Instagram SNI) is
counted as `flows_unverified` and never reaches the writer.

Every flow is the flow of a device (`device_of`): a phone's own WireGuard listener, or the
client's address for the Wi-Fi proxy. Captured responses and TLS failures carry it, and
`Sightings` tells the writer when a device was seen and when it first accepted the box's
certificate (at most once per device every SIGHTING_SECONDS).

The live check of the set-up page (`wireguard.CHECK_HOST`) is answered here and never
forwarded: over plain HTTP it proves the phone's traffic reaches the box, over HTTPS that the
phone trusts the box's certificate. Inside a WireGuard tunnel, the proxy's DNS answers the check's
name too.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time

from mitmproxy import connection, ctx, dns, http, tls

from instaflyd.capture.flows import (
    ORIGINAL_HOST,
    captured_response,
    original_host,
    path_without_query,
    verified_host,
)
from instaflyd.capture.hosts import is_instagram_host
from instaflyd.capture.wireguard import (
    CHECK_ADDRESS,
    CHECK_HOST,
    CHECK_PATH,
    device_of_listener,
)
from instaflyd.capture.writer import CaptureWriter, DeviceSeen, TlsFailure

log = logging.getLogger("instafly.capture")

SIGHTING_SECONDS = 30.0  # a device's "last seen" is at most this late
SIGHTINGS_MAX = 4096  # devices remembered between sightings (beyond: forgotten, shipped again)
CHECK_FLOW = "instafly.check"  # flow.metadata key of a live check this addon answered
DNS_A, DNS_AAAA = 1, 28


def device_of(client: connection.Client) -> str:
    """wg:<id> for a phone's WireGuard listener, ip:<address> for any other client."""
    mode = client.proxy_mode
    if getattr(mode, "type_name", "") == "wireguard":
        key = device_of_listener(getattr(mode, "data", None))
        if key is not None:
            return key
    peer = client.peername[0] if client.peername else "unknown"
    return f"ip:{peer}"


def connection_kind(client: connection.Client) -> str:
    """proxy (the Wi-Fi proxy), wireguard or transparent."""
    name = str(getattr(client.proxy_mode, "type_name", ""))
    return "proxy" if name == "regular" else name


class Sightings:
    """When to tell the writer a device was seen: its first sighting, its first trusted
    handshake, then at most every SIGHTING_SECONDS."""

    def __init__(self, writer: CaptureWriter) -> None:
        self.writer = writer
        self._shipped: dict[str, tuple[float, bool]] = {}

    def seen(self, key: str, trusted: bool = False) -> None:
        now = time.monotonic()
        last = self._shipped.get(key)
        if last is not None and now - last[0] < SIGHTING_SECONDS and (last[1] or not trusted):
            return
        if len(self._shipped) >= SIGHTINGS_MAX:
            self._shipped.clear()
        self._shipped[key] = (now, trusted or (last is not None and last[1]))
        self.writer.submit(DeviceSeen(key, time.time(), trusted))


class CaptureAddon:
    def __init__(self, writer: CaptureWriter, max_body_bytes: int) -> None:
        self.writer = writer
        self.max_body_bytes = max_body_bytes
        self.sightings = Sightings(writer)

    def client_connected(self, client: connection.Client) -> None:
        try:
            self.sightings.seen(device_of(client))
        except Exception:
            log.exception("capture: cannot tell which device connected")

    def tls_established_client(self, data: tls.TlsData) -> None:
        """The client accepted the box's certificate: its device trusts the box."""
        try:
            self.sightings.seen(device_of(data.context.client), trusted=True)
        except Exception:
            log.exception("capture: cannot record a trusted handshake")

    def request(self, flow: http.HTTPFlow) -> None:
        """Answer the set-up page's live check; it never leaves the box."""
        try:
            if original_host(flow).lower().rstrip(".") == CHECK_HOST:
                flow.metadata[CHECK_FLOW] = True
                flow.response = check_response(flow)
        except Exception:
            log.exception("capture: cannot answer the live check")

    def dns_request(self, flow: dns.DNSFlow) -> None:
        """Inside a WireGuard tunnel the phone asks the proxy's DNS for the check's name."""
        try:
            questions = flow.request.questions
            if len(questions) != 1 or questions[0].name.lower().rstrip(".") != CHECK_HOST:
                return
            if questions[0].type == DNS_A:
                address = ipaddress.IPv4Address(CHECK_ADDRESS)
                flow.response = flow.request.succeed([dns.ResourceRecord.A(CHECK_HOST, address)])
            else:
                flow.response = flow.request.succeed([])
        except Exception:
            log.exception("capture: cannot answer the check's DNS query")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Remember the host the client asked for, before any addon rewrites the request."""
        try:
            flow.metadata[ORIGINAL_HOST] = flow.request.pretty_host
        except Exception:
            log.exception("capture: cannot read a request's host")

    def response(self, flow: http.HTTPFlow) -> None:
        try:
            if flow.metadata.get(CHECK_FLOW):
                return
            self.writer.count("flows")
            host = original_host(flow)
            if not is_instagram_host(host):
                return
            # ssl_insecure (refused in the config, checked again here) means nothing is verified.
            trusted = None if ctx.options.ssl_insecure else verified_host(flow)
            if trusted is None:
                self.writer.count("flows_unverified")
                where = host + path_without_query(flow.request.path)
                log.debug("capture: ignored %s: not proven (%s)", where, _connection(flow))
                return
            captured = captured_response(
                flow, self.max_body_bytes, trusted, device_of(flow.client_conn)
            )
            if captured is not None:
                self.writer.submit(captured)
        except Exception:
            log.exception("capture: cannot classify a response; the flow is left alone")

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """A client refused our certificate (a pinning app, or a phone without the CA)."""
        try:
            host = data.conn.sni or _server_host(data)
            device = device_of(data.context.client)
            self.writer.submit(TlsFailure(host or "(unknown)", str(data.conn.error or ""), device))
        except Exception:
            log.exception("capture: cannot record a TLS failure")

    def running(self) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        addresses = ", ".join(f"{host}:{port}" for host, port, *_ in proxyserver.listen_addrs())
        # "regular@8080" -> "regular" (the phones' WireGuard listeners follow, and say so)
        modes = ", ".join(dict.fromkeys(m.split("@")[0].split(":")[0] for m in ctx.options.mode))
        log.info("proxy listening on %s (%s mode)", addresses or "(nothing)", modes)
        # Never the WireGuard client configurations mitmproxy offers: they hold the phones'
        # private keys (the set-up page shows each phone its own).

    def done(self) -> None:
        self.writer.stop()


def check_response(flow: http.HTTPFlow) -> http.Response:
    """What the set-up page's script reads: it reached the box, over TLS or not, as which
    device. Any page may read it (it holds nothing secret); never cached."""
    client = flow.client_conn
    if flow.request.path.split("?", 1)[0] != CHECK_PATH:
        return http.Response.make(404, b"not found\n", {"Content-Type": "text/plain"})
    body = {
        "instafly": "check",
        "secure": bool(client.tls_established),
        "device": device_of(client),
        "via": connection_kind(client),
    }
    return http.Response.make(
        200,
        json.dumps(body).encode(),
        {
            "Content-Type": "application/json",
            "Access-Control-Allow-Origin": "*",
            "Cache-Control": "no-store",
        },
    )


def _connection(flow: http.HTTPFlow) -> str:
    """For the log: how the flow arrived (what a client chose, so never believed)."""
    if not flow.client_conn.tls_established:
        return "plain HTTP"
    return f"TLS, SNI {flow.client_conn.sni!r}, server {flow.server_conn.sni!r}"


def _server_host(data: tls.TlsData) -> str | None:
    address = data.context.server.address
    return str(address[0]) if address else None
