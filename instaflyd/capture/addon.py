"""The mitmproxy addon: classify Instagram responses and hand them to the writer process.

The hooks run on mitmproxy's event loop, so they only look at the flow's host, path, status and
content type and pass the body on; parsing, Pillow and SQLite happen in the writer process. No
hook ever raises into mitmproxy: a failure is logged and the flow goes on untouched.

Only a response that verifiably came from Instagram over TLS is captured (`verified_host`); one
that merely names an Instagram host (plain HTTP, a forged Host header, a non-Instagram SNI) is
counted as `flows_unverified` and never reaches the writer.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http, tls

from instaflyd.capture.flows import (
    ORIGINAL_HOST,
    captured_response,
    original_host,
    path_without_query,
    verified_host,
)
from instaflyd.capture.hosts import is_instagram_host
from instaflyd.capture.writer import CaptureWriter, TlsFailure

log = logging.getLogger("instafly.capture")


class CaptureAddon:
    def __init__(self, writer: CaptureWriter, max_body_bytes: int) -> None:
        self.writer = writer
        self.max_body_bytes = max_body_bytes

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Remember the host the client asked for, before any addon rewrites the request."""
        try:
            flow.metadata[ORIGINAL_HOST] = flow.request.pretty_host
        except Exception:
            log.exception("capture: cannot read a request's host")

    def response(self, flow: http.HTTPFlow) -> None:
        try:
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
            captured = captured_response(flow, self.max_body_bytes, trusted)
            if captured is not None:
                self.writer.submit(captured)
        except Exception:
            log.exception("capture: cannot classify a response; the flow is left alone")

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """A client refused our certificate (a pinning app, or a phone without the CA)."""
        try:
            host = data.conn.sni or _server_host(data)
            self.writer.submit(TlsFailure(host or "(unknown)", str(data.conn.error or "")))
        except Exception:
            log.exception("capture: cannot record a TLS failure")

    def running(self) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        addresses = ", ".join(f"{host}:{port}" for host, port, *_ in proxyserver.listen_addrs())
        modes = ", ".join(ctx.options.mode)
        log.info("proxy listening on %s (%s mode)", addresses or "(nothing)", modes)
        for server in proxyserver.servers:
            if peer := getattr(server, "client_conf", lambda: None)():
                log.info("WireGuard configuration for the phones:\n%s", peer)

    def done(self) -> None:
        self.writer.stop()


def _connection(flow: http.HTTPFlow) -> str:
    """For the log: how the flow arrived (what a client chose, so never believed)."""
    if not flow.client_conn.tls_established:
        return "plain HTTP"
    return f"TLS, SNI {flow.client_conn.sni!r}, server {flow.server_conn.sni!r}"


def _server_host(data: tls.TlsData) -> str | None:
    address = data.context.server.address
    return str(address[0]) if address else None
