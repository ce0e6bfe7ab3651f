"""Photos that cannot be saved because the disk is full (a real small tmpfs as the output folder)
wait without using up their attempts, and are enhanced by themselves once there is room."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, cli_env, jpeg_bytes, wait_until, write_config
from support_faults import fill, small_tmpfs
from support_model import TINY_MODEL

pytestmark = pytest.mark.slow  # a real worker and enhancer with TensorFlow

PHOTOS = 3


def jobs(db: Path) -> list[tuple[str, str, int, str | None]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute("SELECT input_path, state, attempts, reason FROM jobs ORDER BY id")
        return [(Path(p).name, s, a, r) for p, s, a, r in rows]
    finally:
        conn.close()


def test_photos_wait_on_a_full_disk_and_are_enhanced_once_there_is_room(
    tmp_path: Path, trained_data_dir: Path
) -> None:
    data = shutil.copytree(trained_data_dir, tmp_path / "data")
    drop = tmp_path / "drop"
    drop.mkdir()
    with small_tmpfs(tmp_path / "out", 8) as out:
        config = write_config(
            tmp_path / "instafly.yaml",
            {
                "data_dir": str(data),
                **TINY_MODEL,
                "watch": {"drop_dir": str(drop), "output_dir": str(out), "settle_seconds": 0.3,
                          "max_attempts": 2},
            },
        )  # fmt: skip
        filler = fill(out)
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "instaflyd", "--config", str(config), "worker"],
            stdout=log, stderr=subprocess.STDOUT, env=cli_env(), cwd=REPO,
        )  # fmt: skip
        try:
            for n in range(PHOTOS):
                (drop / f"photo{n}.jpg").write_bytes(jpeg_bytes(160, 120, seed=n))
            waiting = wait_until(
                lambda: [j for j in jobs(data / "instafly.db") if j[3] and "disk is full" in j[3]],
                120,
                "a photo to wait for room",
                process=worker,
                output=lambda: (tmp_path / "worker.log").read_text(errors="replace"),
            )
            assert waiting[0][3] == "waiting: the disk is full"
            time.sleep(8)  # several tries later (more than max_attempts), none failed for good
            states = {j[1] for j in jobs(data / "instafly.db")}
            assert "failed" not in states, jobs(data / "instafly.db")

            filler.unlink()  # the household frees space
            wait_until(
                lambda: [j[1] for j in jobs(data / "instafly.db")] == ["done"] * PHOTOS,
                120,
                "every photo to be enhanced",
                process=worker,
                output=lambda: (tmp_path / "worker.log").read_text(errors="replace"),
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            log.close()
    final = jobs(data / "instafly.db")
    assert [j[2] for j in final] == [1] * PHOTOS  # the attempts that waited were given back
    assert all(j[3] is None for j in final)
