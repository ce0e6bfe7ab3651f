"""Benchmark: the memory of a real `instaflyd run` process tree, idle, training and enhancing a
12-megapixel photo, and the first photo's latency after idle against a warm one.

One run of the real daemon (proxy, capture writer, worker, and the trainer and enhancer while they
work) on loopback ports, with a store of generated labelled posts (tests/support_model.py):

1. training: the scheduler finds the posts due and starts `train --scheduled`; the tree's
   resident memory is sampled every 0.2 s until the model is promoted and the trainer has ended;
2. idle: nothing to do; the tree's memory, per process;
3. enhancing, cold: a 12 MP JPEG is dropped while no enhancer runs; the time from the file being
   in place to its job being done, and the tree's peak memory;
4. enhancing, warm: a second 12 MP JPEG right after, the enhancer (and the model) still loaded;
5. idle again, once the enhancer has ended after `watch.idle_unload_seconds`.

Resident memory is VmRSS from /proc (shared pages count in every process that maps them, so the
tree's sum is an upper bound). The model is the product's (VGG16 + head) at `--input-size`, with
random ImageNet-free weights (`model.weights: none`) so that it runs offline; the memory of the
real weights is the same. Latencies include `watch.settle_seconds` (0.5 s here).

    .venv/bin/python bench/footprint.py [--input-size 320] [--steps 50] [--epochs 2]

With `--training-only`, the trainer alone, old code against new in one run: for each side (the
old one is `git archive` of `--old-ref`, default d1c5165, main before the trainer stopped
building VGG16 for cached features), a fresh store of the same 72 generated posts (same seed),
then `instaflyd train` twice as a process of its own: "cold" computes every post's features,
"warm" (`--force`) finds them cached. With `--malloc-side`, a third side, "new, default malloc",
is the new code with `allocator.return_large_blocks` turned off, to show that lever apart. Each
trainer runs in its side's source folder (`python -m` imports from the working directory before
PYTHONPATH: run from the checkout, the old side would be the new code). Printed:
each run's peak resident memory (the kernel's ru_maxrss of the process, from wait4), seconds,
and validation Spearman; then new / old for each run. Weights are random (`model.weights:
none`): the ImageNet file cannot be downloaded here, and its values take the same memory.

    .venv/bin/python bench/footprint.py --training-only [--input-size 320] [--old-ref d1c5165]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from helpers import free_port  # noqa: E402
from idle import old_source  # noqa: E402
from PIL import Image  # noqa: E402
from support_model import add_generated_posts  # noqa: E402

from instaflyd.config import build_config  # noqa: E402
from instaflyd.processes import process_tree, resident_bytes  # noqa: E402

MB = 1024 * 1024
IDLE_UNLOAD_SECONDS = 10
# The new code with glibc's allocator left at its defaults (the one lever measured apart).
DEFAULT_MALLOC = [
    "-c",
    "import sys, instaflyd.allocator as a; a.return_large_blocks = lambda: False;"
    " from instaflyd.cli import main; sys.argv[0] = 'instaflyd'; sys.exit(main())",
]


def role(pid: int) -> str:
    """What a process of the tree is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "gone"
    line = " ".join(argv)
    if "--enhancer" in argv:
        return "enhancer"
    for name in ("worker", "proxy", "run"):
        if name in argv:
            return {"run": "daemon"}.get(name, name)
    if "train" in argv:
        return "trainer"
    if "spawn_main" in line:
        return "capture writer"
    if "resource_tracker" in line:
        return "mp resource tracker"
    return argv[0].rsplit("/", 1)[-1] or "?"


def tree_memory(root: int) -> dict[str, int]:
    """Resident bytes by role (two processes of one role are summed)."""
    memory: dict[str, int] = defaultdict(int)
    for pid in process_tree(root):
        rss = resident_bytes(pid)
        if rss:
            memory[role(pid)] += rss
    return dict(memory)


class Sampler:
    """Samples the tree every 0.2 s; keeps the peak of the sum, with its breakdown."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            now = tree_memory(self.root)
            if sum(now.values()) > sum(self.peak.values()):
                self.peak = now


def query(db: Path, sql: str) -> list[tuple]:
    try:
        conn = sqlite3.connect(db, timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def wait(what: str, check, timeout: float, daemon: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def photo_12mp(path: Path, seed: int) -> None:
    """A 4000x3000 JPEG: smooth gradients with texture and noise, like a real photo's content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
    base = np.stack([x / 4000 * 180 + 40, y / 3000 * 160 + 50, (x + y) / 7000 * 120 + 60], -1)
    noise = rng.normal(0, 10, (300, 400, 3)).astype(np.float32)
    texture = np.asarray(
        Image.fromarray(noise.astype(np.int8).view(np.uint8)).resize((4000, 3000))
    ).astype(np.float32)
    pixels = np.clip(base + 0.1 * texture, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)


def print_memory(label: str, memory: dict[str, int]) -> None:
    parts = ", ".join(f"{name} {rss / MB:.0f}" for name, rss in sorted(memory.items()))
    print(f"{label:<24} tree {sum(memory.values()) / MB:6.0f} MB  ({parts})")


def trainer_peak(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, dict]:
    """Run one `instaflyd train --json` in `cwd` (`-m` imports from there first, before
    PYTHONPATH); (peak RSS in MB, seconds, its JSON document)."""
    began = time.monotonic()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command}: exit {process.returncode}: {err.decode()[-2000:]}")
    return usage.ru_maxrss / 1024, time.monotonic() - began, json.loads(out)


def training_sides(args: argparse.Namespace) -> None:
    """The trainer's peak memory and validation Spearman, old code against new."""
    work = Path(tempfile.mkdtemp(prefix="instafly-train-footprint-"))
    old = old_source(args.old_ref, work / "old-src")
    rows = []
    sides = (("old", old, []), ("new", REPO, []), ("new, default malloc", REPO, DEFAULT_MALLOC))
    for name, source, launch in sides[: 3 if args.malloc_side else 2]:
        folder = work / name.replace(", ", "-").replace(" ", "-")
        data_dir = folder / "data"
        values = {
            "data_dir": str(data_dir),
            "model": {"input_size": args.input_size, "weights": "none"},
            "train": {"epochs": args.epochs, "min_labelled_posts": 20, "min_owners": 3,
                      "batch_size": 16},
        }  # fmt: skip
        config_file = folder / "instafly.yaml"
        config_file.parent.mkdir(parents=True)
        config_file.write_text(yaml.safe_dump(values))
        add_generated_posts(build_config(values, data_dir=data_dir), 72)
        env = {**os.environ, "PYTHONPATH": str(source), "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("INSTAFLY_CONFIG", None)
        base = [sys.executable, *(launch or ["-m", "instaflyd"]), "--config", str(config_file),
                "train", "--json", "--allow-random-weights"]  # fmt: skip
        for run, extra in (("cold", []), ("warm", ["--force"])):
            peak, seconds, result = trainer_peak(base + extra, env, source)
            rows.append((name, run, peak, seconds, result["val_srcc"]))
            print(f"{name} {run}: peak {peak:.0f} MB, {seconds:.1f} s, "
                  f"validation Spearman {result['val_srcc']:.4f}", flush=True)  # fmt: skip
    print(f"\ntrainer at {args.input_size} px, 72 posts, {args.epochs} epochs; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'side':20} {'run':5} {'peak MB':>8} {'seconds':>8} {'val Spearman':>13}")
    for name, run, peak, seconds, srcc in rows:
        print(f"{name:20} {run:5} {peak:8.0f} {seconds:8.1f} {srcc:13.4f}")
    by = {(name, run): (peak, srcc) for name, run, peak, _, srcc in rows}
    for side in ("new", "new, default malloc")[: 2 if args.malloc_side else 1]:
        for run in ("cold", "warm"):
            (old_peak, old_srcc), (new_peak, new_srcc) = by["old", run], by[side, run]
            agree = "agrees" if abs(new_srcc - old_srcc) <= 0.01 else "DIFFERS"
            print(f"{side}, {run}: peak / old = {new_peak / old_peak:.2f} ({old_peak:.0f} -> "
                  f"{new_peak:.0f} MB); Spearman change {new_srcc - old_srcc:+.4f} "
                  f"({agree} within 0.01)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--training-only", action="store_true")
    parser.add_argument("--old-ref", default="d1c5165")
    parser.add_argument("--malloc-side", action="store_true", help="also the third side")
    args = parser.parse_args()
    if args.training_only:
        training_sides(args)
        return

    work = Path(tempfile.mkdtemp(prefix="instafly-footprint-"))
    data_dir = work / "data"
    values = {
        "data_dir": str(data_dir),
        "proxy": {"listen_host": "127.0.0.1", "listen_port": free_port()},
        "web": {"host": "127.0.0.1", "port": free_port()},
        "model": {"input_size": args.input_size, "weights": "none"},
        "watch": {
            "drop_dir": "drop",
            "output_dir": "enhanced",
            "settle_seconds": 0.5,
            "idle_unload_seconds": IDLE_UNLOAD_SECONDS,
        },
        "train": {
            "epochs": args.epochs,
            "min_labelled_posts": 20,
            "min_owners": 3,
            "min_new_posts": 10,
            "check_interval_seconds": 1,
            "batch_size": 16,
        },
        "enhance": {"steps": args.steps},
    }
    config_path = work / "instafly.yaml"
    config_path.write_text(yaml.safe_dump(values))
    add_generated_posts(build_config(values, data_dir=data_dir), 72)
    (data_dir / "drop").mkdir()
    db = data_dir / "instafly.db"
    log = (work / "daemon.log").open("wb")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "instaflyd", "--config", str(config_path), "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    print(f"instaflyd run (pid {daemon.pid}), input size {args.input_size}, {args.steps} steps;"
          f" log in {work / 'daemon.log'}")  # fmt: skip
    try:
        roles = lambda: {role(p) for p in process_tree(daemon.pid)}  # noqa: E731
        with Sampler(daemon.pid) as training:
            wait("the model", lambda: query(db, "SELECT 1 FROM model_versions"), 1800, daemon)
            wait("the trainer to end", lambda: "trainer" not in roles(), 120, daemon)
        time.sleep(5)  # let the tree settle
        idle = tree_memory(daemon.pid)

        latencies = []
        with Sampler(daemon.pid) as enhancing:
            for n in (1, 2):
                source = work / f"photo{n}.jpg"
                photo_12mp(source, seed=n)
                started = time.monotonic()
                os.replace(source, data_dir / "drop" / source.name)
                wait(
                    f"photo {n}",
                    lambda n=n: query(
                        db, f"SELECT 1 FROM jobs WHERE input_path LIKE '%photo{n}.jpg'"
                        " AND state IN ('done', 'rejected', 'failed')",
                    ),
                    1800,
                    daemon,
                )  # fmt: skip
                latencies.append(time.monotonic() - started)
        states = query(db, "SELECT state, COUNT(*) FROM jobs GROUP BY state")
        wait("the enhancer to end", lambda: "enhancer" not in roles(), 120, daemon)
        time.sleep(3)
        idle_after = tree_memory(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        log.close()

    print_memory("idle (after training)", idle)
    print_memory("training (peak)", training.peak)
    print_memory("enhancing 12 MP (peak)", enhancing.peak)
    print_memory("idle (after enhancing)", idle_after)
    print(f"jobs: {dict(states)}")
    cold, warm = latencies
    print(
        f"12 MP photo, drop to done: first after idle {cold:.1f} s, warm {warm:.1f} s"
        f" (first/warm {cold / warm:.2f}x)"
    )
    print(f"idle tree / enhancing peak: {sum(idle.values()) / sum(enhancing.peak.values()):.2f}")


if __name__ == "__main__":
    main()
