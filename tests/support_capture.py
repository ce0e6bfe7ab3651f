"""Capture test support: a local stand-in for Instagram, the proxy as a real process, clients.

`InstagramStandIn` is a real HTTPS server on loopback that answers every request recorded in a
mitmproxy dump (by default tests/fixtures/instagram/sample.flows) with the recorded response:
status, content type, content encoding and body, byte for byte. Its certificate comes from its
own small CA, so it can also play "some other HTTPS site" whose certificate a client checks.
Its certificate names Instagram's hosts too (`INSTAGRAM_NAMES`), as Instagram's own does: capture
believes a host only when the verified upstream certificate names it.
`mitmproxy_options()` is what `proxy.mitmproxy_options` needs to send the proxy's Instagram
traffic there instead of the internet.

For the attacks on the proxy: `proxy_config` (its config file), `box_service` (a plain HTTP
service on the box, what a LAN device must not reach through the proxy), `via_proxy` (a
request from a given 127.0.0.x address), `household_requests` (a phone browsing), `tunnel`
and `open_tunnels` (idle CONNECT tunnels from one), `still_open`, `close_all` and
`counters`.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import resource
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import brotli
import requests
import zstandard
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helpers import FIXTURES, REPO, cli_env, wait_until, write_config
from mitmproxy import certs, http, io

SAMPLE_DUMP = FIXTURES / "instagram" / "sample.flows"
# The names Instagram's certificates carry (and the stand-in's, beside localhost and 127.0.0.1).
INSTAGRAM_NAMES = ("instagram.com", "*.instagram.com", "*.cdninstagram.com", "*.fbcdn.net",
                   "*.fna.fbcdn.net", "*.fplm3-1.fna.fbcdn.net", "*.fxyz1-1.fna.fbcdn.net")  # fmt: skip


@functools.cache
def instagram_certificate() -> certs.Cert:
    """A certificate naming Instagram's hosts, issued by a test CA (for tflow flows)."""
    key, ca = certs.create_ca(organization="Instafly tests", cn="Flow CA", key_size=2048)
    return certs.dummy_cert(
        key, ca, "www.instagram.com", [x509.DNSName(n) for n in INSTAGRAM_NAMES]
    )


def as_verified_tls(flow: http.HTTPFlow) -> http.HTTPFlow:
    """The flow as the proxy sees one from Instagram: TLS on both sides, the client's SNI the
    request's host, the upstream certificate naming it."""
    flow.client_conn.sni = flow.request.pretty_host
    flow.client_conn.timestamp_tls_setup = flow.server_conn.timestamp_tls_setup = 1.0
    flow.server_conn.certificate_list = [instagram_certificate()]
    return flow


@dataclass(frozen=True)
class Recorded:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    url: str
    body: bytes
    cookie: str


def recorded_requests(dump: Path = SAMPLE_DUMP) -> list[RecordedRequest]:
    """The dump's requests, in order, as a client would send them."""
    with dump.open("rb") as handle:
        return [
            RecordedRequest(
                f.request.method,
                f.request.pretty_url,
                f.request.raw_content or b"",
                f.request.headers.get("cookie", ""),
            )
            for f in io.FlowReader(handle).stream()
            if isinstance(f, http.HTTPFlow)
        ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a browser's connection to Instagram
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: _StandInServer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        recorded = self.server.responses.get(self.path)
        if recorded is None and self.server.answer is not None:
            recorded = self.server.answer(self.path)
        if recorded is None:
            recorded = Recorded(404, [("Content-Type", "text/plain")], b"not recorded\n")
        self.send_response(recorded.status)
        for name, value in recorded.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(recorded.body)))
        self.end_headers()
        self.wfile.write(recorded.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _StandInServer(ThreadingHTTPServer):
    daemon_threads = True
    responses: dict[str, Recorded]
    answer: Callable[[str], Recorded | None] | None


class InstagramStandIn:
    """`with InstagramStandIn(tmp_path) as origin:` serves on https://127.0.0.1:<origin.port>."""

    def __init__(
        self,
        directory: Path,
        dump: Path = SAMPLE_DUMP,
        answer: Callable[[str], Recorded | None] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """`answer(path)` makes responses the dump does not have, one request at a time;
        `host` is the address it listens on (and its certificate names)."""
        directory.mkdir(parents=True, exist_ok=True)
        key, ca = certs.create_ca(organization="Instafly tests", cn="Stand-in CA", key_size=2048)
        sans = [
            x509.DNSName("localhost"),
            *{x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", host)},
            *(x509.DNSName(name) for name in INSTAGRAM_NAMES),
        ]
        leaf = certs.dummy_cert(key, ca, "localhost", sans)
        self.ca_path = directory / "standin-ca.pem"
        self.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        chain = directory / "standin-leaf.pem"
        chain.write_bytes(
            leaf.to_pem()
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        self.leaf_der = ssl.PEM_cert_to_DER_cert(leaf.to_pem().decode())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        self.host = host
        self._server = _StandInServer((host, 0), _Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.responses = _responses_of(dump)
        self._server.answer = answer
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> InstagramStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def mitmproxy_options(self) -> dict[str, object]:
        """Send every decrypted request here; verify this server's certificate."""
        return {
            "map_remote": [f"|^https://[^/]+/|https://{self.host}:{self.port}/"],
            "ssl_verify_upstream_trusted_ca": str(self.ca_path),
            "connection_strategy": "lazy",  # no connection to the real host on CONNECT
        }


def _responses_of(dump: Path) -> dict[str, Recorded]:
    responses = {}
    with dump.open("rb") as handle:
        for f in io.FlowReader(handle).stream():
            if isinstance(f, http.HTTPFlow) and f.response is not None:
                headers = [
                    (name, value)
                    for name, value in f.response.headers.items()
                    if name.lower() in ("content-type", "content-encoding")
                ]
                responses[f.request.path] = Recorded(
                    f.response.status_code, headers, f.response.raw_content or b""
                )
    return responses


# --- the proxy as a real process ----------------------------------------------------------------


@contextlib.contextmanager
def running_proxy(
    config: Path,
    port: int,
    log_path: Path,
    timeout: float = 60,
    namespace: str | None = None,
    max_files: int | None = None,
    proxy_host: str = "127.0.0.1",
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `instaflyd proxy` (inside the network namespace `namespace`, if given; allowed
    `max_files` open files, if given), wait until it accepts connections on `proxy_host` (in a
    namespace: until it says it listens), SIGTERM it at the end."""
    command = [sys.executable, "-m", "instaflyd", "--config", str(config), "proxy"]
    if namespace is not None:
        command = ["ip", "netns", "exec", namespace, *command]  # ip execs: the pid is the proxy's
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=cli_env(), cwd=REPO,
            preexec_fn=None if max_files is None else functools.partial(_limit_files, max_files),
        )  # fmt: skip
        try:
            if namespace is None:
                wait_for_port(port, process, log_path, timeout, proxy_host)
            else:
                wait_until(
                    lambda: f":{port} (" in log_path.read_text(), timeout,
                    f"the proxy to listen on {port} in {namespace}", process=process,
                    output=log_path.read_text,
                )  # fmt: skip
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _limit_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def wait_for_port(
    port: int,
    process: subprocess.Popen[bytes],
    log_path: Path,
    timeout: float,
    host: str = "127.0.0.1",
) -> None:
    def accepts() -> bool:
        socket.create_connection((host, port), 0.5).close()
        return True

    wait_until(accepts, timeout, f"the proxy to listen on {port}", process=process,
               output=log_path.read_text)  # fmt: skip


def tls_through_proxy(proxy_port: int, host: str, port: int, cafile: Path | None) -> ssl.SSLSocket:
    """CONNECT through the proxy, then a TLS handshake that checks the certificate against
    `cafile` (None: the system's CAs). The caller closes the socket."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    try:
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        assert reply.split(b"\r\n", 1)[0].split(b" ")[1] == b"200", reply
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


# --- decompression bombs -------------------------------------------------------------------------

MiB = 1024 * 1024
_ZEROS = bytes(16 * MiB)


@functools.cache
def bomb(coding: str, decoded_mib: int) -> bytes:
    """A body that decodes to `decoded_mib` MiB of zeros in one stream (one gzip member, one
    brotli stream, one zstd frame). Deflate and gzip repeat one fully flushed block, so a 1 GiB
    bomb takes a second to make instead of fifteen."""
    repeats = decoded_mib // 16
    if coding in ("gzip", "deflate"):
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        block = deflater.compress(_ZEROS) + deflater.flush(zlib.Z_FULL_FLUSH)
        stream = block * repeats + deflater.flush()
        if coding == "deflate":
            return stream  # raw deflate, as some servers send it
        crc = 0
        for _ in range(repeats):
            crc = zlib.crc32(_ZEROS, crc)
        size = (repeats * len(_ZEROS)) & 0xFFFFFFFF
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        return header + stream + struct.pack("<II", crc, size)
    if coding == "br":
        compressor = brotli.Compressor(quality=4, lgwin=24)
        return b"".join(
            [compressor.process(_ZEROS) for _ in range(repeats)] + [compressor.finish()]
        )
    if coding == "zstd":
        compressor = zstandard.ZstdCompressor(level=19, write_content_size=False).compressobj()
        return b"".join(
            [compressor.compress(_ZEROS) for _ in range(repeats)] + [compressor.flush()]
        )
    raise ValueError(coding)


def huge_png(side: int = 9400) -> bytes:
    """A 9,400 x 9,400 greyscale PNG of ~280 KB: one IDAT of zlib'd all-zero rows, written by
    hand so the test never holds the 88 MB picture itself."""
    row = b"\0" * (side + 1)  # filter byte + pixels
    deflater = zlib.compressobj(9)
    idat = b"".join(deflater.compress(row) for _ in range(side)) + deflater.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# --- LAN devices against the proxy, and services on the box ---------------------------------------

BIG = 20_000_000  # the size of `box_service`'s /big... answers (a video, not captured)


class _BoxServiceHandler(BaseHTTPRequestHandler):
    served: list[str]

    def do_GET(self) -> None:
        self.served.append(self.path)
        size = BIG if self.path.startswith("/big") else 2
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4" if size == BIG else "text/plain")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            sent = 0
            while sent < size:
                part = chunk[: size - sent]
                self.wfile.write(part)
                sent += len(part)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def box_service(host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[int, list[str]]]:
    """A plain HTTP service on the box (loopback only by default): what a LAN device must not
    reach through the proxy. Yields its port and the paths it served."""
    served: list[str] = []
    handler = type("Handler", (_BoxServiceHandler,), {"served": served})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], served
    finally:
        server.shutdown()
        server.server_close()


def counters(db: Path) -> dict[str, int]:
    """The store's counters table, by name ({} before the writer made the database)."""
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT name, value FROM counters").fetchall())


class _SourceAdapter(requests.adapters.HTTPAdapter):
    """Connections from one local address (a LAN device played by 127.0.0.x)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]

    def proxy_manager_for(self, *args: object, **kwargs: object) -> object:
        kwargs["source_address"] = (self.source, 0)
        return super().proxy_manager_for(*args, **kwargs)  # type: ignore[arg-type]


def device_session(source: str) -> requests.Session:
    """A requests session whose connections come from `source`, ignoring proxy variables."""
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", _SourceAdapter(source))
    return session


def proxy_config(
    tmp_path: Path, port: int, listen_host: str = "127.0.0.1", **proxy: object
) -> Path:
    """instafly.yaml in `tmp_path` for the proxy alone: data in tmp_path/data, listening on
    listen_host:port, with `proxy` keys on top (max_connections, box_ports_allowed ...)."""
    return write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "proxy": {"listen_host": listen_host, "listen_port": port, **proxy},
        },
    )


def open_tunnels(
    proxy_port: int, source: str, target: str, count: int, proxy_host: str = "127.0.0.1"
) -> list[socket.socket]:
    """Up to `count` idle CONNECT tunnels from `source`, one after another, until the proxy
    refuses one: those it accepted."""
    opened = []
    for _ in range(count):
        sock = tunnel(proxy_port, source, target, proxy_host)
        if sock is None:
            break
        opened.append(sock)
    return opened


def close_all(socks: Iterable[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


def household_requests(
    proxy_port: int, target: int, source: str, rounds: int = 10, path: str = "phone"
) -> list[int | str]:
    """A phone at `source` browsing http://127.0.0.1:<target>/<path><n> through the proxy,
    `rounds` times on one keep-alive session: each answer's status, or the error's name."""
    session = device_session(source)
    proxies = {"http": f"http://127.0.0.1:{proxy_port}"}
    codes: list[int | str] = []
    for n in range(rounds):
        try:
            url = f"http://127.0.0.1:{target}/{path}{n}"
            codes.append(session.get(url, proxies=proxies, timeout=10).status_code)
        except requests.RequestException as exc:
            codes.append(type(exc).__name__)
    session.close()
    return codes


def via_proxy(proxy_port: int, url: str, source: str, timeout: float = 30) -> int:
    """The status of a plain-HTTP GET of `url` through the proxy, from `source`."""
    proxies = {"http": f"http://127.0.0.1:{proxy_port}"}
    return device_session(source).get(url, proxies=proxies, timeout=timeout).status_code


def tunnel(
    proxy_port: int, source: str, target: str, proxy_host: str = "127.0.0.1"
) -> socket.socket | None:
    """An idle CONNECT tunnel through the proxy from `source`, or None if it was refused."""
    sock = socket.create_connection(
        (proxy_host, proxy_port), timeout=10, source_address=(source, 0)
    )
    try:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        answer = sock.recv(4096)
    except OSError:
        answer = b""
    if answer.startswith(b"HTTP/1.1 200"):
        return sock
    sock.close()
    return None


def still_open(sock: socket.socket) -> bool:
    """Is the connection still open at the other end (nothing read, nothing waited for)?"""
    timeout = sock.gettimeout()
    sock.settimeout(0)  # with a timeout, recv would wait for data first
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)


def proxy_answers(port: int) -> bool:
    """Something answers HTTP on the proxy's port (it is listening)."""
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    except requests.RequestException:
        return False
    return True


def browse_through(port: int, ca: str, request: RecordedRequest) -> int:
    """One recorded request through the proxy on `port`, trusting the box's CA; its status."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": f"http://127.0.0.1:{port}"}
    return session.request(
        request.method, request.url, data=request.body, verify=ca, timeout=30
    ).status_code
