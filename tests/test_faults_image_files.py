"""Captured photos changed on disk (truncated, overwritten) or removed are counted and shown.

Real image files in a real store: one truncated, one overwritten with another photo, one
deleted. Training leaves their posts out and says why; the daemon's image check (and `instaflyd
stats`) counts them on the repairs list (while the labelled count still includes them), and
the card goes once the photos are stored again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers import jpeg_bytes
from support_daemon import seed_store

from instaflyd import repairs
from instaflyd.config import build_config
from instaflyd.daemon.image_check import ImageCheck
from instaflyd.model.labels import labelled_posts
from instaflyd.status.collect import collect_status
from instaflyd.status.image_files import CHANGED
from instaflyd.store import Database, ImageFiles
from instaflyd.store.images import check_labelled_image_files


def test_changed_and_missing_image_files_are_left_out_counted_and_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    seed_store(config.data_dir, posts=12)
    files = ImageFiles(config.images_dir)
    stored = sorted(config.images_dir.rglob("*.jpg"))
    assert len(stored) == 12
    truncated, overwritten, removed = stored[0], stored[1], stored[2]
    originals = {path: path.read_bytes() for path in (truncated, overwritten, removed)}
    truncated.write_bytes(originals[truncated][: len(originals[truncated]) // 2])
    overwritten.write_bytes(jpeg_bytes(200, 150, seed=99))  # another photo, another size
    removed.unlink()

    registry = repairs.RepairsRegistry()
    repairs.install(registry)
    try:
        with Database(config.db_path) as db:
            check = check_labelled_image_files(db.conn, files)
            assert check.checked == 12
            assert check.changed == {truncated.stem, overwritten.stem}
            assert check.missing == {removed.stem}

            with caplog.at_level(logging.WARNING, logger="instafly"):
                posts = labelled_posts(db.conn, files)
            assert len(posts) == 9
            assert {p.image_sha256 for p in posts}.isdisjoint(check.unusable)
            said = [r.getMessage() for r in caplog.records]
            assert "1 labelled posts skipped: their image file is missing" in said
            assert (
                "2 labelled posts skipped: their image file was changed on disk (truncated or"
                " overwritten) since it was stored"
            ) in said

            images = ImageCheck(db, files)
            images.tick(now=0.0)
            [problem] = registry.problems()
            assert (problem.id, problem.severity) == (CHANGED, "warning")
            assert problem.sentence.startswith(
                "3 of the 12 labelled posts' photos cannot be used any more (2 changed on disk"
                " (truncated or overwritten), 1 missing), so training leaves those posts out"
            )
            assert "restore the latest backup" in problem.action
            status = collect_status(config, db.conn, None)  # `instaflyd stats`, no daemon
            assert status.capture.totals.labelled == 12  # what the page counts: said above
            [card] = [p for p in status.repairs.problems if p.id == CHANGED]
            assert (card.sentence, card.action) == (problem.sentence, problem.action)

            # A phone sees the posts again: the photos are stored again, the card goes.
            for data in originals.values():
                files.put(data, "jpg")
            assert images.tick(now=1.0) is images.last  # not due yet: checked every 6 h
            assert registry.problems() == [problem]
            healed = images.tick(now=images.every + 1)
            assert healed is not None and not healed.unusable
            assert registry.problems() == []
            assert len(labelled_posts(db.conn, files)) == 12
    finally:
        repairs.install(None)
