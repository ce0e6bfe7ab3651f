"""A big store stays fast: the page, the API, metrics, stats, export and import at scale.

Builds a store of `--posts` labelled posts (100,000) by `--accounts` owners (3,000) with
`--events` events (1,000,000), then measures, each against the goal:

  /, /api/status, /metrics     served by waitress on loopback (as `instaflyd run` serves them),
                               one keep-alive client, p50 and p95 of `--requests` requests each
                               (goal: p50 <= 50 ms)
  stats --json                 the command, a process of its own, wall time (goal: <= 1 s)
  export --csv FILE            the command at a tenth of the posts and at all of them: wall
                               time and the process's peak RSS (goal: flat memory)
  import                       `instaflyd import` of a generated dump of v1 feed responses
                               (`--import-posts` new posts, 50 a response): posts/s

    .venv/bin/python bench/store_scale.py                      # the goal's size
    .venv/bin/python bench/store_scale.py --posts 20000 --accounts 600 --events 200000
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402
from big_store import add_posts  # noqa: E402
from mitmproxy import http as mhttp  # noqa: E402
from mitmproxy.io import FlowWriter  # noqa: E402
from mitmproxy.test import tflow  # noqa: E402

from instaflyd.config import Config, build_config  # noqa: E402
from instaflyd.store import Database  # noqa: E402
from instaflyd.web import create_app  # noqa: E402
from instaflyd.web.server import WebServer  # noqa: E402

INSTAFLYD = [sys.executable, "-m", "instaflyd"]
PASSWORD = "bench-password"  # the page always needs one; scripts use HTTP basic auth
BASIC_AUTH = "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
POSTS_PER_RESPONSE = 50


def add_events(config: Config, events: int, now: float) -> None:
    """`events` events over the last 30 days (a fixture: inserted in bulk)."""
    rng = np.random.default_rng(1)
    kinds = [("proxy", "warning", "parse_error"), ("trainer", "info", "model_trained"),
             ("worker", "error", "job_failed"), ("supervisor", "warning", "restart")]  # fmt: skip
    with Database(config.db_path) as db:
        for start in range(0, events, 100_000):
            batch = min(100_000, events - start)
            ages = np.sort(rng.uniform(0, 30 * 86_400, batch))[::-1]
            rows = []
            for i, age in enumerate(ages):
                component, level, kind = kinds[(start + i) % len(kinds)]
                rows.append((now - float(age), component, level, kind, f"event {start + i}"))
            with db.transaction() as conn:
                conn.executemany(
                    "INSERT INTO events (ts, component, level, kind, message)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


def measure_endpoints(config: Config, requests: int) -> dict[str, tuple[float, float]]:
    server = WebServer(create_app(config), "127.0.0.1", 0)
    server.start()
    host, port = server.address.rsplit(":", 1)
    results = {}
    try:
        client = http.client.HTTPConnection(host, int(port), timeout=60)
        for path in ("/", "/api/status", "/metrics"):
            samples = []
            for _ in range(requests + 2):
                started = time.perf_counter()
                client.request("GET", path, headers={"Authorization": BASIC_AUTH})
                response = client.getresponse()
                body = response.read()
                samples.append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}: {body[:200]!r}")
            results[path] = percentiles(samples[2:])  # the first two warm caches up
        client.close()
    finally:
        server.stop()
    return results


def timed_rss(config: Config, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, measured by a wrapper process of its own
    (RUSAGE_CHILDREN is per process tree, so each command gets a fresh one)."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    argv = [*INSTAFLYD, "--data-dir", str(config.data_dir), *args]
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, check=True)
    seconds, kb = out.stdout.split()
    return float(seconds), int(kb) / 1024


def v1_feed(first: int, accounts: int, now: float) -> bytes:
    items = []
    for i in range(first, first + POSTS_PER_RESPONSE):
        owner = 2_000_000 + i % accounts
        items.append(
            {
                "pk": str(80_000_000 + i),
                "id": f"{80_000_000 + i}_{owner}",
                "code": f"I{i:x}",
                "media_type": 1,
                "like_count": 100 + i % 977,
                "comment_count": i % 31,
                "taken_at": int(now) - i,
                "user": {"pk": str(owner), "username": f"import{owner}", "follower_count": 5000},
                "image_versions2": {
                    "candidates": [
                        {
                            "url": f"https://scontent.cdninstagram.com/v/t51/{i}_{owner}_n.jpg",
                            "width": 1080,
                            "height": 1080,
                        }
                    ]
                },
            }
        )
    return json.dumps({"items": items, "num_results": len(items), "more_available": True}).encode()


def write_dump(path: Path, posts: int, accounts: int, now: float) -> None:
    with path.open("wb") as handle:
        writer = FlowWriter(handle)
        for n, first in enumerate(range(0, posts, POSTS_PER_RESPONSE)):
            flow = tflow.tflow(resp=True)
            flow.request = mhttp.Request.make(
                "GET", f"https://i.instagram.com/api/v1/feed/user/{n}/?count=50"
            )
            flow.response = mhttp.Response.make(
                200, v1_feed(first, accounts, now), {"content-type": "application/json"}
            )
            flow.request.timestamp_start = flow.response.timestamp_start = now + n
            writer.add(flow)


def build(config: Config, posts: int, accounts: int, events: int, now: float) -> float:
    started = time.perf_counter()
    for start in range(0, posts, 10_000):
        add_posts(config, min(10_000, posts - start), accounts, start=start, now=now)
    add_events(config, events, now)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--import-posts", type=int, default=20_000)
    args = parser.parse_args()

    now = time.time()
    with tempfile.TemporaryDirectory(prefix="instafly-bench-") as temp:
        settings = {"web": {"password": PASSWORD}}
        small = build_config(settings, data_dir=Path(temp) / "small")
        big = build_config(settings, data_dir=Path(temp) / "big")
        tenth = max(1, args.posts // 10)
        build(small, tenth, max(2, args.accounts // 10), args.events // 10, now)
        seconds = build(big, args.posts, args.accounts, args.events, now)
        size = big.db_path.stat().st_size / 1e6
        print(
            f"store: {args.posts:,} posts, {args.accounts:,} accounts, {args.events:,} events "
            f"(built in {seconds:.0f} s; database {size:.0f} MB); {os.cpu_count()} CPUs"
        )

        print(f"  {'endpoint':<14}{'p50 ms':>9}{'p95 ms':>9}   goal p50 <= 50 ms")
        for path, (p50, p95) in measure_endpoints(big, args.requests).items():
            print(f"  {path:<14}{p50:9.1f}{p95:9.1f}   {'ok' if p50 <= 50 else 'MISSED'}")

        stats_seconds, _ = timed_rss(big, "stats", "--json")
        print(
            f"  stats --json: {stats_seconds:.2f} s  {'ok' if stats_seconds <= 1 else 'MISSED'}"
            " (goal <= 1 s, a whole process)"
        )

        rss = {}
        for label, config, posts in (("small", small, tenth), ("big", big, args.posts)):
            out = Path(temp) / f"{label}.csv"
            took, rss[label] = timed_rss(config, "export", "--csv", str(out))
            print(
                f"  export --csv {posts:>7,} posts: {took:6.2f} s, peak RSS {rss[label]:6.1f} MB,"
                f" {out.stat().st_size / 1e6:.1f} MB written"
            )
        ratio = rss["big"] / rss["small"]
        print(f"  export peak RSS {args.posts:,} / {tenth:,} posts: {ratio:.2f}x (flat: about 1x)")

        dump = Path(temp) / "import.flows"
        write_dump(dump, args.import_posts, max(2, args.accounts // 10), now)
        took, _ = timed_rss(big, "import", str(dump))
        print(
            f"  import {args.import_posts:,} new posts into the big store: {took:.1f} s, "
            f"{args.import_posts / took:,.0f} posts/s (process start included)"
        )


if __name__ == "__main__":
    main()
