"""Attacks on capture from a device on the LAN, performed for real: the proxy as a process,
real clients, a real plain-HTTP origin on loopback and the HTTPS stand-in for Instagram.

Each test asserts the outcome: nothing stored, the attempt counted, the proxy still capturing.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import socket
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from helpers import FIXTURES, free_port, wait_until, write_config
from PIL import Image
from support_capture import InstagramStandIn, running_proxy

PROFILE_PATH = "/api/v1/users/web_profile_info/?username=robertdowneyjr"
PROFILE_JSON = (FIXTURES / "instagram/pgrimaud/web_profile_info_2022-06_full.json").read_bytes()
IMAGE_PATH = "/v/t51.2885-15/279923746_752618449450106_6016545400124263448_n.jpg"


def small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(out, "JPEG")
    return out.getvalue()


class _PlainOrigin(BaseHTTPRequestHandler):
    """Any plain-HTTP site on the LAN: answers Instagram-shaped bodies to whoever asks."""

    protocol_version = "HTTP/1.1"
    served: list[str]

    def do_GET(self) -> None:
        if self.path.endswith(".jpg"):
            body, headers = small_jpeg(), {"Content-Type": "image/jpeg"}
        else:
            body = gzip.compress(PROFILE_JSON)
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        self.served.append(self.path)
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def plain_origin() -> Iterator[tuple[int, list[str]]]:
    served: list[str] = []
    handler = type("Handler", (_PlainOrigin,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], served
    finally:
        server.shutdown()
        server.server_close()


def rows(db: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def counters(db: Path) -> dict[str, int]:
    return dict(rows(db, "SELECT name, value FROM counters")) if db.exists() else {}


def wait_for_counter(db: Path, name: str, value: int, timeout: float = 20) -> None:
    wait_until(lambda: counters(db).get(name) == value, timeout, f"counter {name} = {value}")


def proxy_config(tmp_path: Path, port: int, origin: InstagramStandIn, **proxy: object) -> Path:
    return write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "proxy": {
                "listen_host": "127.0.0.1",
                "listen_port": port,
                "mitmproxy_options": origin.mitmproxy_options(),
                **proxy,
            },
        },
    )


def https_with_sni(proxy_port: int, connect_to: str, sni: str, ca: Path, request: bytes) -> bytes:
    """CONNECT `connect_to`, a TLS handshake naming `sni`, one request; the whole answer."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=20) as sock:
        sock.sendall(f"CONNECT {connect_to} HTTP/1.1\r\nHost: {connect_to}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        context = ssl.create_default_context(cafile=str(ca))
        with context.wrap_socket(sock, server_hostname=sni) as tls:
            tls.sendall(request)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            return answer


@pytest.mark.slow
def test_forged_instagram_hosts_from_the_lan_store_nothing_and_are_counted(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = tmp_path / "data"
    db = data / "instafly.db"
    with InstagramStandIn(tmp_path / "standin") as standin, plain_origin() as (origin, served):
        config = proxy_config(tmp_path, port, standin)
        with running_proxy(config, port, tmp_path / "proxy.log"):
            ca = data / "mitmproxy" / "mitmproxy-ca-cert.pem"
            proxies = {"http": f"http://127.0.0.1:{port}", "https": f"http://127.0.0.1:{port}"}
            session = requests.Session()
            session.trust_env = False
            # 1. Plain HTTP to a LAN origin, with the Host header of Instagram's API and CDN.
            for host, path in (
                ("www.instagram.com", PROFILE_PATH),
                ("i.instagram.com", PROFILE_PATH),
                ("scontent.cdninstagram.com", IMAGE_PATH),
            ):
                answer = session.get(
                    f"http://127.0.0.1:{origin}{path}", headers={"Host": host}, proxies=proxies
                )
                assert answer.status_code == 200  # the origin did answer, through the proxy
            assert served == [PROFILE_PATH, PROFILE_PATH, IMAGE_PATH]
            # 2. TLS to an Instagram address, but the handshake names another host (SNI) and
            #    only the Host header says Instagram.
            answer = https_with_sni(
                port,
                "www.instagram.com:443",
                "evil.example",
                ca,
                f"GET {PROFILE_PATH} HTTP/1.1\r\nHost: www.instagram.com\r\n"
                "Connection: close\r\n\r\n".encode(),
            )
            assert answer.startswith(b"HTTP/1.1 200")  # the stand-in answered the profile
            wait_for_counter(db, "flows_unverified", 4)
            # 3. The same profile, asked for as Instagram's app does: captured.
            real = session.get(
                f"https://www.instagram.com{PROFILE_PATH}", proxies=proxies, verify=str(ca)
            )
            assert real.status_code == 200
            wait_for_counter(db, "posts_new", 20)
    assert rows(db, "SELECT COUNT(*) FROM accounts") == [(1,)]
    assert rows(db, "SELECT COUNT(*) FROM images") == [(0,)]
    counted = counters(db)
    assert counted["flows_unverified"] == 4
    assert counted["instagram_json"] == 1  # only the verified response was ever parsed
