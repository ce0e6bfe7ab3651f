"""What does capture cost? The same HTTPS client load, four ways, in one run on loopback:

  (a) direct       client -> local origin
  (b) mitmdump     client -> plain mitmdump (decrypting, no addon) -> origin
  (c) passthrough  client -> instaflyd proxy, a non-Instagram host (not decrypted) -> origin
  (d) capture      client -> instaflyd proxy, Instagram JSON and images (decrypted, parsed,
                   stored) -> origin

The origin is tests/support_capture.py's stand-in for Instagram, replaying the sample dump
(JSON of 4-360 KB, gzip/br/zstd, and small JPEGs). The client is one keep-alive
`requests.Session` per scenario sending the dump's requests in order, N times over; scenarios
take turns in rounds so that background noise hits all of them alike. Reports p50/p95 latency
and requests per second, and the ratios c/b and d/b.

    .venv/bin/python bench/proxy_overhead.py [--requests 3000] [--rounds 10]   # about 80 s
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import cli_env, free_port, write_config  # noqa: E402
from mitmproxy.version import VERSION as MITMPROXY_VERSION  # noqa: E402
from support_capture import (  # noqa: E402
    InstagramStandIn,
    RecordedRequest,
    recorded_requests,
    running_proxy,
    wait_for_port,
)

Send = Callable[[], None]


def session_for(proxy_port: int | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy or CA bundle from the environment
    if proxy_port is not None:
        session.proxies = {"https": f"http://127.0.0.1:{proxy_port}"}
    return session


def sender(session: requests.Session, request: RecordedRequest, url: str, verify: Path) -> Send:
    def send() -> None:
        response = session.request(
            request.method, url, data=request.body, verify=str(verify), timeout=30
        )
        response.content  # noqa: B018 (read the whole body)

    return send


def scenario(proxy_port: int | None, verify: Path, origin_port: int | None) -> list[Send]:
    """One sender per dump request; origin_port set: to https://localhost:<port><path>."""
    session = session_for(proxy_port)
    sends = []
    for request in recorded_requests():
        url = request.url
        if origin_port is not None:
            parts = urlsplit(url)
            url = f"https://localhost:{origin_port}{parts.path}"
            url += f"?{parts.query}" if parts.query else ""
        sends.append(sender(session, request, url, verify))
    return sends


def measure(sends: list[Send], count: int) -> tuple[list[float], float]:
    latencies = []
    started = time.perf_counter()
    for index in range(count):
        send = sends[index % len(sends)]
        before = time.perf_counter()
        send()
        latencies.append(time.perf_counter() - before)
    return latencies, time.perf_counter() - started


def start_mitmdump(
    port: int, confdir: Path, options: dict[str, object], log: Path
) -> subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).parent / "mitmdump"),
        "--quiet",
        "--listen-host", "127.0.0.1",
        "--listen-port", str(port),
        "--set", f"confdir={confdir}",
    ]  # fmt: skip
    for name, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            command += ["--set", f"{name}={item}"]
    process = subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=cli_env()
    )
    wait_for_port(port, process, log, timeout=60)
    return process


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" mitmproxy {MITMPROXY_VERSION}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per scenario (default 3000)")
    parser.add_argument("--rounds", type=int, default=10, help="turns per scenario (default 10)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="instafly-bench-") as temp, ExitStack() as stack:
        work = Path(temp)
        origin = stack.enter_context(InstagramStandIn(work / "origin"))
        data = work / "data"
        instafly_port, mitmdump_port = free_port(), free_port()
        config = write_config(
            work / "instafly.yaml",
            {
                "data_dir": str(data),
                "log": {"level": "warning"},
                "proxy": {
                    "listen_host": "127.0.0.1",
                    "listen_port": instafly_port,
                    "mitmproxy_options": origin.mitmproxy_options(),
                },
            },
        )
        stack.enter_context(running_proxy(config, instafly_port, work / "instafly.log"))
        ca = data / "mitmproxy" / "mitmproxy-ca-cert.pem"
        mitmdump = start_mitmdump(
            mitmdump_port, data / "mitmproxy", origin.mitmproxy_options(), work / "mitmdump.log"
        )
        stack.callback(mitmdump.wait, 30)
        stack.callback(mitmdump.terminate)

        scenarios = {
            "(a) direct": scenario(None, origin.ca_path, origin.port),
            "(b) mitmdump, decrypting": scenario(mitmdump_port, ca, None),
            "(c) instaflyd, passthrough": scenario(instafly_port, origin.ca_path, origin.port),
            "(d) instaflyd, capturing": scenario(instafly_port, ca, None),
        }
        for sends in scenarios.values():  # warm up: connections, certificates
            measure(sends, len(sends))
        latencies: dict[str, list[float]] = {name: [] for name in scenarios}
        seconds = dict.fromkeys(scenarios, 0.0)
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            for name, sends in scenarios.items():
                taken, elapsed = measure(sends, per_round)
                latencies[name] += taken
                seconds[name] += elapsed

        stack.close()  # stop both proxies: instaflyd's writer flushes its counters
        with sqlite3.connect(data / "instafly.db") as conn:
            counted = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            posts = conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0]

    print(f"proxy overhead: {per_round * args.rounds} HTTPS requests per scenario, keep-alive,")
    print(f"the sample dump's 12 requests (JSON and JPEGs) in turn; {machine()}")
    print(f"{'scenario':30} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8}")
    summary = {}
    for name, taken in latencies.items():
        p50 = statistics.median(taken) * 1000
        p95 = statistics.quantiles(taken, n=20)[18] * 1000
        rate = len(taken) / seconds[name]
        summary[name[1]] = (p50, p95, rate)
        print(f"{name:30} {p50:8.2f} {p95:8.2f} {rate:8.0f}")
    b, c, d = summary["b"], summary["c"], summary["d"]
    print(f"c/b: p50 {c[0] / b[0]:.2f}, p95 {c[1] / b[1]:.2f}, req/s {c[2] / b[2]:.2f}")
    print(f"d/b: p50 {d[0] / b[0]:.2f}, p95 {d[1] / b[1]:.2f}, req/s {d[2] / b[2]:.2f}")
    print(
        f"instaflyd in (d) and the warm-up: {counted.get('flows', 0)} flows,"
        f" {counted.get('instagram_json', 0)} JSON documents parsed, {posts} posts,"
        f" {counted.get('flows_dropped', 0)} flows dropped"
    )


if __name__ == "__main__":
    main()
