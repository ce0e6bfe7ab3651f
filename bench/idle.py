"""Benchmark: what the whole appliance costs in CPU when nothing happens, and under a trickle of
posts that never improves the model, the old code against the new in one run.

Each side is the real appliance, `instaflyd run` (supervisor, page, proxy, capture writer,
worker, and the trainer when the scheduler starts one), from its own copy of the code: "old"
is `git archive` of a baseline commit (default c3a0771, before the training policy), "new" this
checkout. Both get the same config (a tiny model: 64 px input, random weights; the scheduler
checks every 20 s; 10 new posts make training due) and the same seeded store (48 labelled posts
whose likes follow brightness, so the first model learns something). Then, per side:

1. the daemon starts and trains its first model; the bench waits until that run is over;
2. **idle**: no traffic for `--idle-minutes`; the CPU time of the daemon's whole process tree
   (every live process's user + system time, plus what its reaped children used) is measured;
3. **trickle**: for `--trickle-minutes`, a feeder process (not counted) adds one labelled post
   every `--post-every` seconds whose likes are random (they teach the model nothing), and the
   tree's CPU time, the training runs and how many were promoted are counted.

Figures are CPU seconds per hour (idle goal: 36, 1% of one core). The sides run one after the
other (2 cores); the machine's load during the run is printed with them.

    .venv/bin/python bench/idle.py [--idle-minutes 5] [--trickle-minutes 10] [--old-ref c3a0771]
    [--sides old,new]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # tests' support modules; the side's instaflyd comes first (PYTHONPATH)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SEED_POSTS = 48


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the process tree's CPU time ---------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float, str] | None:
    """(parent pid, CPU seconds incl. reaped children, name) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / CLOCK_TICKS, name


def _cmdline(pid: int) -> str:
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [part.decode(errors="replace") for part in parts if part]
    if "-m" in words and "instaflyd" in words:
        tail = words[words.index("instaflyd") + 1 :]
        command = [
            word
            for word in tail
            if not word.startswith("/") and word not in {"--config", "--data-dir"}
        ]
        return "instaflyd " + " ".join(command[:2])
    return " ".join(words[:2])


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """Every process under `root` (itself included): pid -> (command, CPU seconds)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            stats[int(entry)] = stat
    members, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, _) in stats.items():
            if ppid == parent and pid not in members:
                members.add(pid)
                frontier.append(pid)
    return {pid: (_cmdline(pid), stats[pid][1]) for pid in members if pid in stats}


# --- the feeder: runs in a process of its own, with the side's code -------------------------------


def feed(data_dir: Path, start: int, count: int, every: float) -> None:
    """Add `count` labelled posts with random likes, one per `every` seconds (the side's store)."""
    import numpy as np

    from instaflyd.config import build_config
    from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
    from instaflyd.store.images import record_image
    from instaflyd.store.posts import attach_image, upsert_post
    from tests.support_model import OWNERS, generated_image

    config = build_config({}, data_dir=data_dir)
    files = ImageFiles(config.images_dir)
    rng = np.random.default_rng(start)
    with Database(config.db_path) as db:
        for i in range(start, start + count):
            began = time.monotonic()
            owner_id, followers, _ = OWNERS[i % len(OWNERS)]
            data = generated_image(float(rng.uniform(0.1, 1.0)), seed=i)
            likes = round(math.exp(rng.uniform(-5.0, -1.0)) * followers)  # unrelated to the image
            with db.transaction() as conn:
                stored = files.put(data, "jpg")
                record_image(conn, stored, 96, 96, len(data))
                owner = AccountRecord(
                    owner_id, username=f"user{owner_id}", follower_count=followers
                )
                post_id = str(5_000_000 + i)
                upsert_post(conn, PostRecord(post_id, "photo", owner=owner, like_count=likes))
                attach_image(conn, post_id, stored.sha256)
            time.sleep(max(0.0, every - (time.monotonic() - began)))


def seed(data_dir: Path) -> None:
    from instaflyd.config import build_config
    from tests.support_model import add_generated_posts

    add_generated_posts(build_config({}, data_dir=data_dir), SEED_POSTS)


# --- one side -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    seconds: float
    cpu: float
    by_command: dict[str, float]
    runs: int
    promoted: int
    load: float  # the machine's 1-minute load average at the end

    @property
    def per_hour(self) -> float:
        return self.cpu / self.seconds * 3600


def _read_runs(db_path: Path) -> tuple[int, int]:
    """(training runs finished, versions promoted): read-only, plain sqlite3 for both schemas."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as conn:
        runs = conn.execute(
            "SELECT COUNT(*) FROM training_runs WHERE finished IS NOT NULL"
        ).fetchone()[0]
        promoted = conn.execute(
            "SELECT COUNT(*) FROM model_versions WHERE promoted = 1"
        ).fetchone()[0]
    return int(runs), int(promoted)


def _running(db_path: Path) -> bool:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as conn:
        return bool(
            conn.execute("SELECT COUNT(*) FROM training_runs WHERE state = 'running'").fetchone()[0]
        )


class Side:
    def __init__(self, name: str, source: Path, work: Path) -> None:
        self.name, self.source, self.work = name, source, work
        self.data = work / "data"
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{source}{os.pathsep}{ROOT}",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        self.env.pop("INSTAFLY_CONFIG", None)
        self.process: subprocess.Popen[bytes] | None = None

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def prepare(self) -> Path:
        import yaml

        self.data.mkdir(parents=True)
        (self.data / "web-password").write_text("bench-password\n")
        values = {
            "data_dir": str(self.data),
            "proxy": {"listen_host": "127.0.0.1", "listen_port": free_port()},
            "web": {"host": "127.0.0.1", "port": free_port(), "password": "bench-password"},
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
            "train": {
                "epochs": 3, "min_labelled_posts": 20, "min_owners": 3, "min_new_posts": 10,
                "validation_fraction": 0.34, "check_interval_seconds": 20, "learning_rate": 0.001,
                "batch_size": 16,
            },
        }  # fmt: skip
        config = self.work / "instafly.yaml"
        config.write_text(yaml.safe_dump(values, sort_keys=False))
        subprocess.run(
            self.python(__file__, "--seed", str(self.data)), env=self.env, check=True, cwd=self.work
        )
        return config

    def start(self, config: Path) -> None:
        self.process = subprocess.Popen(
            self.python("-m", "instaflyd", "--config", str(config), "run"),
            env=self.env, cwd=self.work, stdout=(self.work / "daemon.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_first_model(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        db = self.data / "instafly.db"
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    if _read_runs(db)[1] >= 1 and not _running(db):
                        return
                except sqlite3.Error:
                    pass
            assert self.process is not None and self.process.poll() is None, "the daemon ended"
            time.sleep(2)
        raise TimeoutError(f"{self.name}: no first model within {timeout:.0f} s")

    def measure(self, seconds: float, feeder: list[str] | None = None) -> Phase:
        assert self.process is not None
        db = self.data / "instafly.db"
        runs_before, promoted_before = _read_runs(db)
        feeding = subprocess.Popen(feeder, env=self.env, cwd=self.work) if feeder else None
        before = tree_cpu(self.process.pid)
        began = time.monotonic()
        time.sleep(seconds)
        after = tree_cpu(self.process.pid)
        elapsed = time.monotonic() - began
        if feeding is not None:
            feeding.terminate()
            feeding.wait(10)
        by_command: dict[str, float] = {}
        for pid, (command, cpu) in after.items():
            by_command[command] = by_command.get(command, 0.0) + cpu - before.get(pid, ("", 0.0))[1]
        runs, promoted = _read_runs(db)
        return Phase(
            elapsed, sum(by_command.values()), by_command, runs - runs_before,
            promoted - promoted_before, os.getloadavg()[0],
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def old_source(ref: str, into: Path) -> Path:
    """The baseline's instaflyd package, from git (the repository this bench is in)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "instaflyd", "config"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_side(name: str, source: Path, work: Path, args: argparse.Namespace) -> tuple[Phase, Phase]:
    side = Side(name, source, work)
    config = side.prepare()
    side.start(config)
    try:
        side.wait_first_model()
        time.sleep(10)  # the first run's end settles (snapshots, history)
        idle = side.measure(args.idle_minutes * 60)
        count = math.ceil(args.trickle_minutes * 60 / args.post_every) + 10
        feeder = side.python(__file__, "--feed", str(side.data), "--start", str(SEED_POSTS),
                             "--count", str(count), "--every", str(args.post_every))  # fmt: skip
        trickle = side.measure(args.trickle_minutes * 60, feeder)
        return idle, trickle
    finally:
        side.stop()


def report(results: dict[str, tuple[Phase, Phase]], args: argparse.Namespace) -> None:
    print(
        f"\nmachine: {os.cpu_count()} cores, {os.uname().machine}, Python {sys.version.split()[0]}"
    )
    print(f"{'side':5} {'phase':8} {'minutes':>7} {'CPU s':>8} {'CPU s/h':>8} {'runs':>5} "
          f"{'promoted':>8} {'load':>5}")  # fmt: skip
    for name, phases in results.items():
        for label, phase in zip(("idle", "trickle"), phases, strict=True):
            print(
                f"{name:5} {label:8} {phase.seconds / 60:7.1f} {phase.cpu:8.1f} "
                f"{phase.per_hour:8.1f} {phase.runs:5d} {phase.promoted:8d} {phase.load:5.2f}"
            )
    for name, phases in results.items():
        for label, phase in zip(("idle", "trickle"), phases, strict=True):
            parts = sorted(phase.by_command.items(), key=lambda item: -item[1])
            shown = ", ".join(
                f"{command}: {cpu * 3600 / phase.seconds:.0f}"
                for command, cpu in parts
                if cpu > 0.05
            )
            print(f"  {name} {label} CPU s/h by process: {shown}")
    if "old" in results and "new" in results:
        for n, label in enumerate(("idle", "trickle")):
            old, new = results["old"][n].per_hour, results["new"][n].per_hour
            print(f"{label}: new / old = {new / old:.2f} ({old:.0f} -> {new:.0f} CPU s/h)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-minutes", type=float, default=5)
    parser.add_argument("--trickle-minutes", type=float, default=10)
    parser.add_argument("--post-every", type=float, default=3.0, help="seconds between posts")
    parser.add_argument("--old-ref", default="c3a0771")
    parser.add_argument("--sides", default="old,new")
    parser.add_argument("--feed", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--every", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        feed(args.feed, args.start, args.count, args.every)
        return
    if args.seed:
        seed(args.seed)
        return
    work = Path(tempfile.mkdtemp(prefix="instafly-idle-"))
    try:
        results = {}
        for name in args.sides.split(","):
            source = ROOT if name == "new" else old_source(args.old_ref, work / "old-src")
            results[name] = run_side(name, source, work / name, args)
            print(f"{name}: idle {results[name][0].per_hour:.1f} CPU s/h, "
                  f"trickle {results[name][1].per_hour:.1f} CPU s/h", flush=True)  # fmt: skip
        report(results, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
