"""Attacks on capture from a device on the LAN, performed for real: the proxy as a process,
real clients, a real plain-HTTP origin on loopback and the HTTPS stand-in for Instagram.

Each test asserts the outcome: nothing stored, the attempt counted, the proxy still capturing.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from helpers import FIXTURES, cli_env, free_port, wait_until, write_config
from mitmproxy import http
from mitmproxy import io as mitmproxy_io
from mitmproxy.test import tflow
from PIL import Image
from support_capture import (
    InstagramStandIn,
    Recorded,
    bomb,
    huge_png,
    proxy_config,
    running_proxy,
)

PROFILE_PATH = "/api/v1/users/web_profile_info/?username=robertdowneyjr"
PROFILE_JSON = (FIXTURES / "instagram/pgrimaud/web_profile_info_2022-06_full.json").read_bytes()
MiB = 1024 * 1024
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


def origin_proxy_config(
    tmp_path: Path, port: int, origin: InstagramStandIn, **proxy: object
) -> Path:
    """The proxy's config, sending Instagram's traffic to the stand-in `origin`."""
    return proxy_config(tmp_path, port, mitmproxy_options=origin.mitmproxy_options(), **proxy)


def https_with_sni(proxy_port: int, connect_to: str, sni: str, ca: Path, request: bytes) -> bytes:
    """CONNECT `connect_to`, a TLS handshake naming `sni`, one request; the whole answer."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=90) as sock:
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
        config = origin_proxy_config(tmp_path, port, standin, box_ports_allowed=[origin])
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


# --- decompression bombs -----------------------------------------------------------------------

BOMB_PATHS = {
    "gzip": "/api/v1/feed/timeline/?bomb=gzip",
    "br": "/api/v1/feed/timeline/?bomb=br",
    "zstd": "/api/v1/feed/timeline/?bomb=zstd",
}
CDN_BOMB = "https://scontent.cdninstagram.com" + IMAGE_PATH  # an "image", gzip-encoded


def write_bomb_dump(path: Path, decoded_mib: int) -> Path:
    """A dump of Instagram responses that each decode to `decoded_mib` MiB, then a real one."""
    flows = []
    for coding, url_path in BOMB_PATHS.items():
        flows.append(dump_flow(f"https://www.instagram.com{url_path}", coding, "application/json"))
    flows.append(dump_flow(CDN_BOMB, "gzip", "image/jpeg"))
    for flow in flows:
        flow.response.raw_content = bomb(flow.response.headers["Content-Encoding"], decoded_mib)
    profile = dump_flow(f"https://www.instagram.com{PROFILE_PATH}", "gzip", "application/json")
    profile.response.raw_content = gzip.compress(PROFILE_JSON)
    with path.open("wb") as handle:
        writer = mitmproxy_io.FlowWriter(handle)
        for flow in (*flows, profile):
            writer.add(flow)
    return path


def dump_flow(url: str, coding: str, content_type: str) -> http.HTTPFlow:
    request = http.Request.make("GET", url)
    response = http.Response.make(
        200, b"", {"Content-Type": content_type, "Content-Encoding": coding}
    )
    return tflow.tflow(req=request, resp=response)


def writer_pid(proxy_pid: int) -> int:
    """The capture writer: the proxy's child started by multiprocessing's spawn."""
    children = Path(f"/proc/{proxy_pid}/task/{proxy_pid}/children").read_text().split()
    for child in children:
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise AssertionError(f"no writer among {children}")


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most memory the process has held at once."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# Linux hands a child the parent's memory high-water mark when it forks (and keeps it across
# exec), so the ru_maxrss of a process started by a big test worker (TensorFlow loaded) says
# nothing about the process itself. A small wrapper process forks the command instead and reports
# its RUSAGE_CHILDREN peak, which starts from the wrapper's few megabytes.
_PEAK_WRAPPER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
    "sys.stdout.buffer.write(done.stdout); sys.stderr.buffer.write(done.stderr)\n"
    "sys.stderr.write(f'\\nPEAK_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n')\n"
)


def run_measuring_peak_rss(command: list[str]) -> tuple[bytes, bytes, float]:
    """Run `command` to its end; its stdout, stderr and peak resident memory in MiB."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_WRAPPER, *command], capture_output=True, env=cli_env()
    )
    stderr, _, peak_line = done.stderr.rstrip().rpartition(b"\n")
    assert peak_line.startswith(b"PEAK_KB="), done.stderr[-2000:]
    return done.stdout, stderr, int(peak_line.removeprefix(b"PEAK_KB=")) / 1024


# The writer and `import` load mitmproxy, Pillow and SQLite (about 100 MiB here); the limit
# (proxy.max_body_bytes, 25 MB) and one brotli step may come on top, never the 1 GiB.
PEAK_MIB = 300


@pytest.mark.slow
def test_bombs_through_the_proxy_are_skipped_counted_and_the_writer_stays_small(
    tmp_path: Path,
) -> None:
    port = free_port()
    db = tmp_path / "data" / "instafly.db"
    dump = write_bomb_dump(tmp_path / "bombs.flows", decoded_mib=1024)
    with InstagramStandIn(tmp_path / "standin", dump) as standin:
        config = origin_proxy_config(tmp_path, port, standin)
        with running_proxy(config, port, tmp_path / "proxy.log") as proxy:
            ca = tmp_path / "data" / "mitmproxy" / "mitmproxy-ca-cert.pem"
            writer = writer_pid(proxy.pid)
            for host, path in [
                *(("www.instagram.com", p) for p in BOMB_PATHS.values()),
                ("scontent.cdninstagram.com", IMAGE_PATH),
                ("www.instagram.com", PROFILE_PATH),  # and capture goes on
            ]:
                request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                answer = https_with_sni(port, f"{host}:443", host, ca, request.encode())
                assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            wait_for_counter(db, "posts_new", 20)
            wait_for_counter(db, "responses_too_large", 4)
            peak = peak_rss_mib(writer)
    print(f"writer peak memory after four 1 GiB bombs: {peak:.0f} MiB")
    assert peak < PEAK_MIB
    assert "Traceback" not in (tmp_path / "proxy.log").read_text()


@pytest.mark.slow
def test_bombs_through_import_are_skipped_counted_and_import_stays_small(
    tmp_path: Path,
) -> None:
    dump = write_bomb_dump(tmp_path / "bombs.flows", decoded_mib=1024)
    config = write_config(tmp_path / "instafly.yaml", {"data_dir": str(tmp_path / "data")})
    command = [sys.executable, "-m", "instaflyd", "--config", str(config), "import", "--json"]
    stdout, stderr, peak = run_measuring_peak_rss([*command, str(dump)])
    print(f"import peak memory with four 1 GiB bombs: {peak:.0f} MiB")
    assert peak < PEAK_MIB
    summary = json.loads(stdout)
    assert (summary["flows"], summary["posts_new"], summary["errors"]) == (5, 20, 4)
    lines = stderr.decode().splitlines()
    for coding in ("gzip", "br", "zstd"):
        assert any(
            f"the {coding} body decodes to more than the limit of 25,000,000 bytes" in line
            for line in lines
        ), lines


# --- images: bytes after the image, and pictures far larger than Instagram's -----------------

# The attack sent 24 MB after each image; 12 MB shows the same (40 held whole would be 480 MB)
# in half the time.
JUNK = b"\0junk after the image" * (12 * MiB // 22)


def image_with_junk(path: str) -> Recorded | None:
    """/junk/<i>_n.jpg: a valid 64 x 64 JPEG followed by 12 MB of junk; /huge.png: 9,400^2."""
    if path.startswith("/junk/"):
        return Recorded(200, [("Content-Type", "image/jpeg")], small_jpeg() + JUNK)
    if path == "/huge_n.png":
        return Recorded(200, [("Content-Type", "image/png")], huge_png())
    return None


@pytest.mark.slow
def test_images_with_junk_and_huge_pictures_keep_the_writer_small(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "data" / "instafly.db"
    with InstagramStandIn(tmp_path / "standin", answer=image_with_junk) as standin:
        config = origin_proxy_config(tmp_path, port, standin)
        with running_proxy(config, port, tmp_path / "proxy.log") as proxy:
            ca = tmp_path / "data" / "mitmproxy" / "mitmproxy-ca-cert.pem"
            writer = writer_pid(proxy.pid)
            host = "scontent.cdninstagram.com"
            for path in [*(f"/junk/{i}_{i}_{i}_n.jpg" for i in range(40)), "/huge_n.png"]:
                request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                answer = https_with_sni(port, f"{host}:443", host, ca, request.encode())
                assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            # The writer handles responses in order: once this post is in, all 41 went before.
            request = f"GET {PROFILE_PATH} HTTP/1.1\r\nHost: www.instagram.com\r\n\r\n"
            https_with_sni(
                port, "www.instagram.com:443", "www.instagram.com", ca,
                request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n").encode(),
            )  # fmt: skip
            wait_for_counter(db, "posts_new", 20)
            wait_for_counter(db, "images_rejected", 1)  # the 9,400 x 9,400 PNG
            peak = peak_rss_mib(writer)
    print(f"writer peak memory with 40 waiting images of 12 MB each: {peak:.0f} MiB")
    assert peak < PEAK_MIB  # holding them whole would take 480 MB
    assert rows(db, "SELECT COUNT(*) FROM images") == [(0,)]


# --- connections: many from one device, and idle ones ---------------------------------------


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Did the other end close the connection within `within` seconds (with nothing sent)?"""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.mark.slow
def test_a_device_cannot_hold_more_connections_than_its_limit_nor_keep_idle_ones(
    tmp_path: Path,
) -> None:
    port = free_port()
    db = tmp_path / "data" / "instafly.db"
    with InstagramStandIn(tmp_path / "standin") as standin:
        config = origin_proxy_config(
            tmp_path, port, standin, max_connections_per_client=5, idle_timeout_seconds=4
        )
        with running_proxy(config, port, tmp_path / "proxy.log"):
            time.sleep(5)  # running_proxy's own probe connection is gone by the idle timeout
            # Like the attack's half-sent requests: connect, send part of a request, wait.
            sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
            for sock in sockets:
                sock.sendall(b"GET http://mitm.it/ HTTP/1.1\r\nHost: mi")
            try:
                time.sleep(1.5)  # the refused ones are closed at once; the idle timeout is 4 s
                refused = [closed_by_peer(sock, 0.01) for sock in sockets]
                assert refused.count(False) == 5 and refused.count(True) == 7, refused
                wait_for_counter(db, "connections_refused", 7)
                # Nothing more comes on the five kept ones: the proxy closes them.
                kept = [sock for sock, closed in zip(sockets, refused, strict=True) if not closed]
                assert all(closed_by_peer(sock, 15) for sock in kept)
            finally:
                for sock in sockets:
                    sock.close()
            # The places are free again, and the proxy answers.
            session = requests.Session()
            session.trust_env = False
            proxies = {"http": f"http://127.0.0.1:{port}"}
            answer = session.get("http://mitm.it/cert/pem", proxies=proxies, timeout=30)
            assert answer.status_code == 200
            assert answer.content.startswith(b"-----BEGIN CERTIFICATE-----")
