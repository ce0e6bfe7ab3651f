"""A photo dropped again under another name gets its own result, or a sidecar naming the photo
it matched (the queue enhances each content once)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from helpers import jpeg_bytes, sql_scalar, wait_until

from instaflyd.config import build_config
from instaflyd.jobs.outputs import Duplicate, Sidecar, read_sidecar
from instaflyd.store import Database
from instaflyd.store.jobs import enqueue_job, finish_job
from instaflyd.watch.duplicates import note_duplicate
from instaflyd.watch.watcher import DropWatcher


def test_a_copy_of_a_finished_photo_gets_the_result_under_its_own_name(tmp_path: Path) -> None:
    drop, out = tmp_path / "drop", tmp_path / "enhanced"
    drop.mkdir()
    out.mkdir()
    photo = jpeg_bytes(64, 64, 1)
    (drop / "IMG_0001.jpg").write_bytes(photo)
    (drop / "IMG_0001 copy.jpg").write_bytes(photo)
    result = out / "IMG_0001.instafly.jpg"
    result.write_bytes(b"the enhanced photo")
    with Database(tmp_path / "instafly.db") as db:
        with db.transaction() as conn:
            import hashlib

            job = enqueue_job(conn, str(drop / "IMG_0001.jpg"), hashlib.sha256(photo).hexdigest())
            finish_job(conn, job, "done", output_path=str(result), score_before=-3.0,
                       score_after=-2.9)  # fmt: skip
        sidecar = note_duplicate(db, drop / "IMG_0001 copy.jpg", out)
        assert sidecar == out / "IMG_0001 copy.instafly.json"
        assert (out / "IMG_0001 copy.instafly.jpg").read_bytes() == b"the enhanced photo"
        record = json.loads(sidecar.read_text())
        assert (record["status"], record["input"], record["same_as"], record["output"]) == (
            "duplicate", "IMG_0001 copy.jpg", "IMG_0001.jpg", "IMG_0001 copy.instafly.jpg",
        )  # fmt: skip
        assert read_sidecar(sidecar) == Sidecar(
            "duplicate", "IMG_0001 copy.jpg", duplicate=Duplicate(
                "IMG_0001.jpg", job, "done",
                "The same photo as IMG_0001.jpg, enhanced once: this is its result.",
                output="IMG_0001 copy.instafly.jpg", score_before=-3.0, score_after=-2.9,
            ),
        )  # fmt: skip
        # Noted once: a scan after a restart finds it again and writes nothing new.
        assert note_duplicate(db, drop / "IMG_0001 copy.jpg", out) == sidecar
        assert sorted(p.name for p in out.iterdir()) == [
            "IMG_0001 copy.instafly.jpg", "IMG_0001 copy.instafly.json", "IMG_0001.instafly.jpg",
        ]  # fmt: skip
        assert note_duplicate(db, drop / "gone.jpg", out) is None


def test_the_watcher_notes_a_copy_of_a_queued_photo_in_the_output_folder(tmp_path: Path) -> None:
    config = build_config(
        {"watch": {"drop_dir": "drop", "output_dir": "enhanced", "settle_seconds": 0.3}},
        data_dir=tmp_path,
    )
    drop = config.watch.drop_dir
    drop.mkdir(parents=True)
    watcher = DropWatcher(config.watch, config.db_path, on_queued=threading.Event().set)
    watcher.start()
    try:
        (drop / "beach.jpg").write_bytes(jpeg_bytes(64, 64, 2))
        wait_until(lambda: watcher_jobs(config.db_path) == 1, 10, "the first photo queued")
        (drop / "beach from mum.jpg").write_bytes(jpeg_bytes(64, 64, 2))
        sidecar = config.watch.output_dir / "beach from mum.instafly.json"
        wait_until(sidecar.is_file, 10, "the copy's sidecar")
    finally:
        watcher.stop()
    record = json.loads(sidecar.read_text())
    assert (record["same_as"], record["state"]) == ("beach.jpg", "queued")
    assert "its result will be named after beach.jpg" in record["note"]
    assert watcher_jobs(config.db_path) == 1  # still one job: the content is enhanced once


def watcher_jobs(db_path: Path) -> int:
    with Database(db_path) as db:
        return int(sql_scalar(db, "SELECT COUNT(*) FROM jobs"))
