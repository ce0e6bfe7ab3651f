"""The history costs little: the page with a year of history against the same page without,
the API's points, one sample, and the table's size after a simulated year.

On one store of `--posts` labelled posts (100,000), served by waitress on loopback as
`instaflyd run` serves it (the page reads the emitter's snapshot of the status document, built
once here), one keep-alive client, p50 and p95 of `--requests` requests:

  /                           the page with an empty history (the baseline)
  /?range=day|month|year      the same page with a full year of history (every bucket filled)
  /api/history                the posts series of each range

then a year of 5-minute samples through `HistorySampler` (the clock injected): ms per sample
(its transaction included), rows kept and the database's growth.

    .venv/bin/python bench/history.py
    .venv/bin/python bench/history.py --posts 20000 --accounts 600
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
from big_store import add_posts  # noqa: E402

from instaflyd.config import Config, build_config  # noqa: E402
from instaflyd.status.collect import collect_status  # noqa: E402
from instaflyd.status.document import StatusDocument  # noqa: E402
from instaflyd.status.history import HistorySampler  # noqa: E402
from instaflyd.store import Database  # noqa: E402
from instaflyd.store.history import DAY, MINUTES_5, HistorySample, history_size  # noqa: E402
from instaflyd.web import create_app  # noqa: E402
from instaflyd.web.password import set_password  # noqa: E402
from instaflyd.web.server import WebServer  # noqa: E402

PASSWORD = "bench password"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SnapshotDaemon:
    """The daemon as the page sees it: the emitter's latest snapshot, built once."""

    state = "running"

    def __init__(self, document: StatusDocument) -> None:
        self.document = document

    def components(self) -> dict:
        return {}

    def heartbeat_age(self) -> float:
        return 0.0

    def request_training(self) -> tuple[bool, str]:
        return False, "not in a benchmark"

    def latest_status(self) -> StatusDocument:
        return self.document

    def refresh_status(self) -> None:
        pass

    def problems(self) -> list:
        return []


def a_year_of_samples(config: Config, end: float) -> tuple[int, float, int]:
    """Every 5-minute sample of the year up to `end`: (samples, ms each, rows kept)."""
    clock = Clock(end - 365 * DAY)
    sampler = HistorySampler(clock=clock)
    samples = 0
    with Database(config.db_path) as db:
        started = time.perf_counter()
        for k in range(365 * DAY // MINUTES_5 + 1):
            clock.now = end - 365 * DAY + k * MINUTES_5
            if sampler.due(db):
                sampler.record(db, HistorySample(clock.now, k, k // 2, k // 2 + 50, 3 * k,
                                                 k // 300, k / 3000))  # fmt: skip
                samples += 1
        took = time.perf_counter() - started
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return samples, took * 1000 / samples, history_size(db.conn)


def measure(config: Config, paths: list[str], requests: int) -> dict[str, tuple[float, float]]:
    with Database(config.db_path) as db:
        daemon = SnapshotDaemon(collect_status(config, db.conn))
    server = WebServer(create_app(config, daemon), "127.0.0.1", 0)
    server.start()
    host, port = server.address.rsplit(":", 1)
    headers = {"Authorization": "Basic " + _basic(PASSWORD), "Host": server.address}
    results = {}
    try:
        client = http.client.HTTPConnection(host, int(port), timeout=60)
        for path in paths:
            samples = []
            for _ in range(requests + 2):
                started = time.perf_counter()
                client.request("GET", path, headers=headers)
                response = client.getresponse()
                body = response.read()
                samples.append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}: {body[:200]!r}")
            results[path] = (
                float(np.percentile(samples[2:], 50)),
                float(np.percentile(samples[2:], 95)),
            )
        client.close()
    finally:
        server.stop()
    return results


def _basic(password: str) -> str:
    import base64

    return base64.b64encode(f"instafly:{password}".encode()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()

    now = time.time()
    with tempfile.TemporaryDirectory(prefix="instafly-bench-") as temp:
        config = build_config({"web": {"host": "127.0.0.1"}}, data_dir=Path(temp) / "data")
        for start in range(0, args.posts, 10_000):
            add_posts(config, min(10_000, args.posts - start), args.accounts, start=start, now=now)
        set_password(config.data_dir, PASSWORD)
        print(f"store: {args.posts:,} posts, {args.accounts:,} accounts; {os.cpu_count()} CPUs")

        before = measure(config, ["/"], args.requests)["/"]
        size_before = config.db_path.stat().st_size
        samples, ms_each, rows = a_year_of_samples(config, now)
        growth = (config.db_path.stat().st_size - size_before) / 1e3
        print(
            f"a year of samples: {samples:,} samples, {ms_each:.3f} ms each, {rows:,} rows kept, "
            f"database +{growth:,.0f} kB"
        )
        paths = ["/?range=day", "/?range=month", "/?range=year"]
        paths += [f"/api/history?series=posts&range={r}" for r in ("day", "month", "year")]
        after = measure(config, paths, args.requests)
        print(f"  {'request':<38}{'p50 ms':>9}{'p95 ms':>9}{'p50 / page without':>21}")
        print(f"  {'/ (no history yet)':<38}{before[0]:9.1f}{before[1]:9.1f}{1:20.2f}x")
        for path, (p50, p95) in after.items():
            print(f"  {path:<38}{p50:9.1f}{p95:9.1f}{p50 / before[0]:20.2f}x")


if __name__ == "__main__":
    main()
