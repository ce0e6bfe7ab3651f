"""The proxy against many strangers at once, for real (issue 20, items 4 and 5).

- 5: through the real proxy process, LAN devices (127.0.0.5 ...) ask for a service that listens
  on the box's loopback only, by every spelling (127.0.0.1, localhost, 2130706433, 0.0.0.0,
  127.1, CONNECT): each is refused with 502 before any connection is opened, the service sees
  nothing, the refusal is counted and its log line names the real client. The same service on
  a port the administrator allowed answers, so the refusal is the guard's.
- 4: 128 parallel fetches of a 20 MB body through the proxy (not Instagram: it streams) leave
  the proxy's peak memory within tens of MB, not the 3.5 GB it took before; and Instagram
  responses beyond the proxy's body budget pass through uncaptured and counted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from helpers import free_port, wait_until
from mitmproxy.test import taddons, tflow
from support_capture import BIG, box_service, counters, proxy_config, running_proxy, via_proxy

from instaflyd.capture.body_budget import BodyBudget
from instaflyd.capture.box_guard import mapped_destinations
from instaflyd.own_addresses import TheBox, interface_addresses

MiB = 1024 * 1024


def connect_through(proxy_port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                answer += chunk
        return answer


@pytest.mark.slow
def test_the_proxy_never_connects_to_the_box_itself(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "data" / "instafly.db"
    lan = sorted(a for a in interface_addresses() if ":" not in a and not a.startswith("127."))
    with box_service() as (hidden, served), box_service("0.0.0.0") as (allowed, allowed_served):
        config = proxy_config(tmp_path, port, box_ports_allowed=[allowed])
        with running_proxy(config, port, tmp_path / "proxy.log"):
            spellings = [
                f"http://127.0.0.1:{hidden}/status",
                f"http://localhost:{hidden}/status",
                f"http://2130706433:{hidden}/status",
                f"http://127.1:{hidden}/status",
                f"http://0.0.0.0:{hidden}/status",
                f"http://127.0.0.9:{hidden}/status",
            ]
            for url in spellings:
                assert via_proxy(port, url, "127.0.0.5") == 502, url
            # A tunnel: mitmproxy may say yes to CONNECT, but nothing comes through it.
            tunnel = connect_through(port, f"127.0.0.1:{hidden}")
            assert tunnel.split(b"\r\n\r\n", 1)[1] == b"", tunnel
            for address in lan[:1]:  # the box's own LAN address, where it has one
                assert via_proxy(port, f"http://{address}:{allowed + 0}/x", "127.0.0.5") == 200
            assert served == []
            # The port the administrator allowed is reachable: the refusals were the guard's.
            assert via_proxy(port, f"http://127.0.0.1:{allowed}/ok", "127.0.0.5") == 200
            assert allowed_served[-1] == "/ok"
            refused = len(spellings) + 1
            wait_until(
                lambda: counters(db).get("connections_to_the_box") == refused, 20, "the count"
            )
        log = (tmp_path / "proxy.log").read_text()
        assert f"refused a connection from 127.0.0.5 to localhost port {hidden}" in log
        assert "that is this box (127.0.0.1)" in log


def test_what_counts_as_the_box() -> None:
    box = TheBox()
    for address in ("127.0.0.1", "127.255.0.7", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1",
                    "169.254.169.254", "fe80::1", "fe80::1%eth0", *interface_addresses()):  # fmt: skip
        assert address in box, address
    for address in ("8.8.8.8", "2a00:1450::1", "localhost", "192.0.2.200"):
        assert address not in box, address
    assert mapped_destinations(
        ["|^https://[^/]+/|https://127.0.0.1:4443/", "~q~x~http://other.lan/", "|bad"]
    ) == {("127.0.0.1", 4443), ("other.lan", 80)}


def status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


@pytest.mark.slow
def test_128_parallel_20_mb_fetches_stream_through(tmp_path: Path) -> None:
    port = free_port()
    with box_service() as (origin, _):
        config = proxy_config(tmp_path, port, box_ports_allowed=[origin])
        with running_proxy(config, port, tmp_path / "proxy.log") as process:
            assert via_proxy(port, f"http://127.0.0.1:{origin}/warm", "127.0.0.5") == 200
            before = status_kib(process.pid, "VmRSS")
            received: list[int] = []

            def fetch(i: int) -> None:
                session = requests.Session()
                session.trust_env = False
                proxies = {"http": f"http://127.0.0.1:{port}"}
                with session.get(
                    f"http://127.0.0.1:{origin}/big{i}", proxies=proxies, stream=True, timeout=300
                ) as answer:
                    received.append(sum(len(c) for c in answer.iter_content(1 << 20)))

            started = time.monotonic()
            threads = [threading.Thread(target=fetch, args=(i,)) for i in range(128)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(600)
            took = time.monotonic() - started
            peak = status_kib(process.pid, "VmHWM")
            after = status_kib(process.pid, "VmRSS")
        assert received == [BIG] * 128
        print(
            f"proxy RSS {before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB,"
            f" {after / 1024:.0f} MiB after 128 x 20 MB in {took:.0f} s"
        )
        assert (peak - before) * 1024 < 400 * MiB


def test_instagram_bodies_beyond_the_budget_pass_uncaptured_and_counted() -> None:
    counted: list[str] = []
    budget = BodyBudget(max_buffered_bytes=3_000, max_body_bytes=2_000, count=counted.append)
    with taddons.context(budget):
        flows = []
        for _ in range(3):
            flow = tflow.tflow(resp=True)
            flow.request.host = "i.instagram.com"
            flow.response.headers["content-type"] = "application/json"
            del flow.response.headers["content-length"]
            budget.responseheaders(flow)
            flows.append(flow)
        streams = [flow.response.stream for flow in flows]
        assert all(callable(stream) for stream in streams)
        assert streams[0](b"a" * 1_500) == b"a" * 1_500  # passed on whatever happens
        assert streams[1](b"b" * 1_500) == b"b" * 1_500
        assert streams[2](b"c" * 10) == b"c" * 10  # the budget (3,000) is spent
        assert budget.buffered == 3_000 and counted == ["responses_over_memory_budget"]
        assert streams[0](b"a" * 600) and counted[-1] == "responses_too_large"  # over 2,000
        assert budget.buffered == 1_500
        for flow in flows:
            budget.response(flow)
        assert [flow.response.raw_content for flow in flows][1] == b"b" * 1_500
        assert budget.buffered == 0 and budget.peak == 3_000
        # Not Instagram, or a video: straight through, nothing kept.
        video = tflow.tflow(resp=True)
        video.request.host = "example.com"
        budget.responseheaders(video)
        assert video.response.stream is True
