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

Then the daily backups, old way against new way, in one run (`--days`, on their own store of
`--daily-posts` posts whose images are `--image-kb` of random bytes each, `--new-per-day` new
posts a day, `backup.keep` 2): the old way wrote every image into each day's file
(`make_backup` + rotation); the new way (`scheduled_backup`) keeps each image once in the
folder's `files/`, shared by the daily backups. Each day both run in this process (in turns:
which goes first alternates, so neither always reads a cold page cache), and the disk each
folder uses (allocated blocks) and each day's time are printed side by side; then a restore
from the newest of each, and the self-contained file made from the new way's newest (the page's
download).

    .venv/bin/python bench/backup.py
    .venv/bin/python bench/backup.py --posts 20000 --accounts 600
    .venv/bin/python bench/backup.py --store /tmp/store   # build once, reuse next time
    .venv/bin/python bench/backup.py --only daily --days 7 --daily-posts 2000 --image-kb 150
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

from instaflyd.backup import make_backup, restore, scheduled_backup  # noqa: E402
from instaflyd.backup.export import export_backup  # noqa: E402
from instaflyd.backup.rotation import backup_name, rotate  # noqa: E402
from instaflyd.config import Config, build_config  # noqa: E402
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
    parser.add_argument("--only", choices=("single", "daily", "both"), default="both")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--daily-posts", type=int, default=2_000)
    parser.add_argument("--new-per-day", type=int, default=100)
    parser.add_argument("--image-kb", type=int, default=150)
    args = parser.parse_args()
    if args.only in ("single", "both"):
        single(args)
    if args.only in ("daily", "both"):
        daily(args)


def disk_bytes(folder: Path) -> int:
    """What the folder takes on the disk (allocated blocks, as `du`)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def daily(args: argparse.Namespace) -> None:
    """N daily backups with keep 2: every image in each file (old) or each image once (new)."""
    with tempfile.TemporaryDirectory(prefix="instafly-bench-daily-") as temp:
        root = Path(temp)
        data = root / "data"
        base = {"watch": {"drop_dir": "d", "output_dir": "o"}}

        def config_for(folder: str) -> Config:
            return build_config({**base, "backup": {"dir": str(root / folder), "keep": 2}}, data)

        old, new = config_for("old"), config_for("new")
        now = time.time()
        image_bytes = args.image_kb * 1000
        add_posts(old, args.daily_posts, max(1, args.daily_posts // 30), now=now,
                  image_bytes=image_bytes)  # fmt: skip
        print(
            f"\ndaily backups, keep 2: a store of {args.daily_posts} posts, images of"
            f" {args.image_kb} kB (data folder {data_size(data) / 1e6:.0f} MB),"
            f" {args.new_per_day} new posts a day"
        )
        print(f"{'day':>4} {'old s':>7} {'old MB on disk':>15} {'new s':>7} {'new MB on disk':>15}")
        totals = {"old": 0.0, "new": 0.0}
        for day in range(args.days):
            if day:
                add_posts(old, args.new_per_day, 50, start=args.daily_posts + day * 100_000,
                          now=now, image_bytes=image_bytes)  # fmt: skip
            when = now + day * 86_400
            seconds = {}
            for way in ("old", "new") if day % 2 == 0 else ("new", "old"):
                started = time.perf_counter()
                if way == "old":
                    make_backup(old, old.backup.dir / backup_name(when))
                    rotate(old)
                else:
                    scheduled_backup(new, now=when)
                seconds[way] = time.perf_counter() - started
                totals[way] += seconds[way]
            print(
                f"{day + 1:4} {seconds['old']:7.1f} {disk_bytes(old.backup.dir) / 1e6:15.1f}"
                f" {seconds['new']:7.1f} {disk_bytes(new.backup.dir) / 1e6:15.1f}"
            )
        old_disk, new_disk = disk_bytes(old.backup.dir), disk_bytes(new.backup.dir)
        print(
            f"after {args.days} days: old {old_disk / 1e6:.0f} MB, new {new_disk / 1e6:.0f} MB"
            f" ({old_disk / new_disk:.2f}x less; data folder {data_size(data) / 1e6:.0f} MB);"
            f" time for all days: old {totals['old']:.1f} s, new {totals['new']:.1f} s"
            f" ({totals['old'] / totals['new']:.2f}x)"
        )
        for way, config in (("old", old), ("new", new)):
            newest = sorted(config.backup.dir.glob("instafly-backup-*.tar"))[-1]
            started = time.perf_counter()
            restore(build_config(base, root / f"restored-{way}"), newest)
            print(f"restore from the newest, {way} way: {time.perf_counter() - started:.1f} s")
        newest = sorted(new.backup.dir.glob("instafly-backup-*.tar"))[-1]
        started = time.perf_counter()
        export_backup(newest, root / "download.tar")
        print(
            f"the self-contained file of the newest (the page's download):"
            f" {time.perf_counter() - started:.1f} s,"
            f" {(root / 'download.tar').stat().st_size / 1e6:.0f} MB"
        )


def single(args: argparse.Namespace) -> None:
    """One backup and one restore of a big store, against tar."""
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
