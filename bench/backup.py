"""What a backup of a big store costs: time, file size and peak memory, against `tar` of the
same data folder (the baseline: what copying the files alone costs, without a consistent
database), and what restoring it onto a fresh data folder costs.

On one store of `--posts` labelled posts (100,000) over `--accounts` owners (bench/big_store.py:
each image a small placeholder file, so the figures are the per-post and per-file costs; a real
box's images add their bytes at the disk's speed) plus a year of history, each step runs as its
own process (`instaflyd backup FILE`, `tar -cf`, `instaflyd restore FILE`), and its wall time and
peak resident memory (the process's own, from GNU time) are printed with the ratio to tar's.

Each is run once to warm the page cache (the files read from memory, as a box that just wrote
them would), then timed.

    .venv/bin/python bench/backup.py
    .venv/bin/python bench/backup.py --posts 20000 --accounts 600
    .venv/bin/python bench/backup.py --store /tmp/store   # build once, reuse next time
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from big_store import add_posts, data_size  # noqa: E402

from instaflyd.config import build_config  # noqa: E402
from instaflyd.store import Database  # noqa: E402
from instaflyd.store.history import HistorySample, record_sample  # noqa: E402


def timed(argv: list[str]) -> tuple[float, float]:
    """Run `argv` under GNU time; its wall seconds and peak RSS in MB (the process alone: a child
    forked from this big process would inherit this process's high-water mark)."""
    with tempfile.NamedTemporaryFile("r") as report:
        result = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", report.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"{argv[:4]} failed: {result.stderr}")
        seconds, kilobytes = report.read().split()[-2:]
    return float(seconds), int(kilobytes) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=3_000)
    parser.add_argument("--store", type=Path, help="keep the built store here and reuse it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="instafly-bench-backup-") as temp:
        root = Path(temp)
        data = args.store or root / "data"
        config = build_config({"watch": {"drop_dir": "d", "output_dir": "o"}}, data_dir=data)
        started = time.perf_counter()
        now = time.time()
        built = config.db_path.exists()
        for start in range(0, 0 if built else args.posts, 20_000):
            add_posts(config, min(20_000, args.posts - start), args.accounts, start=start, now=now)
        with Database(config.db_path) as db, db.transaction() as conn:
            for step in range(0 if built else 365 * 24):
                t = now - step * 3600
                record_sample(conn, HistorySample(t, args.posts, args.posts, 0, step, 0, 0.0))
        print(
            f"store: {args.posts} posts, {args.accounts} owners, database"
            f" {config.db_path.stat().st_size / 1e6:.1f} MB, data folder"
            f" {data_size(data) / 1e6:.1f}"
            f" MB in {sum(1 for _ in data.rglob('*'))} entries (built in"
            f" {time.perf_counter() - started:.0f} s)"
        )
        cli = [sys.executable, "-m", "instaflyd", "--data-dir", str(data)]
        backup = root / "instafly.tar"
        plain_tar = ["tar", "-cf", str(root / "plain.tar"), "-C", str(data), "."]
        timed(plain_tar)  # warm-up
        tar_seconds, tar_mb = timed(plain_tar)
        timed([*cli, "backup", str(backup)])  # warm-up
        backup_seconds, backup_mb = timed([*cli, "backup", str(backup)])
        restore_seconds = restore_mb = 0.0
        for attempt in range(2):  # warm-up, then timed
            restored = root / f"restored{attempt}"
            restore_seconds, restore_mb = timed(
                [sys.executable, "-m", "instaflyd", "--data-dir", str(restored), "restore",
                 str(backup)]
            )  # fmt: skip
        plain = (root / "plain.tar").stat().st_size
        size = backup.stat().st_size
        print(f"{'':28} {'seconds':>8} {'peak MB':>8} {'file MB':>8}  ratio to tar (time)")
        name = "tar -cf of the data folder"
        print(f"{name:28} {tar_seconds:8.1f} {tar_mb:8.0f} {plain / 1e6:8.1f}  1.00")
        print(
            f"{'instaflyd backup FILE':28} {backup_seconds:8.1f} {backup_mb:8.0f} {size / 1e6:8.1f}"
            f"  {backup_seconds / tar_seconds:.2f}"
        )
        print(
            f"{'instaflyd restore FILE':28} {restore_seconds:8.1f} {restore_mb:8.0f} {'':>8}"
            f"  {restore_seconds / tar_seconds:.2f}"
        )
        print(
            f"per post: backup {backup_seconds / args.posts * 1e6:.0f} µs, restore"
            f" {restore_seconds / args.posts * 1e6:.0f} µs"
        )


if __name__ == "__main__":
    main()
