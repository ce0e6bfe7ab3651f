"""The drop folder's ignore rules and settle logic, alone and behind a real watchdog observer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import sql_all, wait_until

from instaflyd.config import build_config
from instaflyd.jobs import file_sha256
from instaflyd.store import Database
from instaflyd.store.jobs import enqueue_job
from instaflyd.watch.rules import DropRules
from instaflyd.watch.settle import STALLED_WRITER_SECONDS, Settler
from instaflyd.watch.watcher import DropWatcher

SETTLE = 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("IMG_0001.JPG", None),
        ("holiday photo.heic", None),
        ("trip/IMG_0002.jpg", "in a subfolder (watch.recursive is off)"),
        (".DS_Store", "hidden"),
        ("._IMG_0001.JPG", "hidden"),
        (".syncthing.IMG_3.jpg.tmp", "hidden"),
        (".stfolder/x.jpg", "hidden"),
        ("IMG_0003.jpg.part", "temporary name of a file still being copied"),
        ("IMG_0003.jpg.crdownload", "temporary name of a file still being copied"),
        ("IMG_0003.jpg.tmp", "temporary name of a file still being copied"),
        ("~$report.docx", "temporary name of a file still being copied"),
        ("~syncthing~IMG_4.jpg.tmp", "temporary name of a file still being copied"),
        ("IMG_0001.instafly.jpg", "an Instafly output"),
        ("IMG_0001.instafly.json", "an Instafly output"),
        ("IMG_0001.instafly-2.jpg", "an Instafly output"),
        ("Thumbs.db", "desktop system file"),
        ("enhanced/IMG_0001.jpg", "inside the output folder"),
    ],
)
def test_ignore_rules(tmp_path: Path, relative: str, reason: str | None) -> None:
    rules = DropRules(tmp_path, tmp_path / "enhanced", recursive=False)
    assert rules.ignore_reason(tmp_path / relative) == reason


def test_recursive_rules_enter_subfolders_but_never_the_output_folder(tmp_path: Path) -> None:
    rules = DropRules(tmp_path, tmp_path / "enhanced", recursive=True)
    assert rules.ignore_reason(tmp_path / "trip" / "day 1" / "a.jpg") is None
    assert rules.ignore_reason(tmp_path / "enhanced" / "trip" / "a.jpg") == (
        "inside the output folder"
    )
    assert not rules.skips_folder(tmp_path / "trip")
    assert rules.skips_folder(tmp_path / "enhanced")
    assert rules.skips_folder(tmp_path / "trip" / ".thumbnails")
    assert DropRules(tmp_path, tmp_path / "out", recursive=False).skips_folder(tmp_path / "trip")
    # An output folder that holds the drop folder is no reason to ignore anything.
    outer = DropRules(tmp_path / "drop", tmp_path, recursive=False)
    assert outer.ignore_reason(tmp_path / "drop" / "a.jpg") is None


def test_a_file_is_due_once_unchanged_for_the_settle_time(tmp_path: Path) -> None:
    clock, photo = Clock(), tmp_path / "a.jpg"
    photo.write_bytes(b"x" * 100)
    settler = Settler(SETTLE, clock)
    settler.seen(photo)
    assert settler.due() == []  # first look: the baseline
    clock.now += 0.4
    assert settler.due() == []
    with photo.open("ab") as handle:  # grows: the wait starts again
        handle.write(b"y")
    clock.now += 0.4
    assert settler.due() == []
    clock.now += 0.4
    assert settler.due() == []
    clock.now += 0.2
    assert settler.due() == [photo]
    assert settler.due() == [] and len(settler) == 0


def test_a_file_still_open_for_writing_waits_for_its_close(tmp_path: Path) -> None:
    clock, photo = Clock(), tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    settler = Settler(SETTLE, clock)
    settler.written(photo)
    settler.due()
    clock.now += 10 * SETTLE  # a long stall, longer than the settle time
    assert settler.due() == []
    settler.closed(photo)
    clock.now += SETTLE
    assert settler.due() == [photo]


def test_a_writer_that_never_closes_is_given_up_on(tmp_path: Path) -> None:
    clock, photo = Clock(), tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    settler = Settler(SETTLE, clock)
    settler.written(photo)
    settler.due()
    clock.now += STALLED_WRITER_SECONDS - 1
    assert settler.due() == []
    clock.now += 1
    assert settler.due() == [photo]


def test_vanished_files_and_symlinks_are_dropped(tmp_path: Path) -> None:
    clock, photo, link = Clock(), tmp_path / "a.jpg", tmp_path / "b.jpg"
    photo.write_bytes(b"x")
    link.symlink_to(photo)
    settler = Settler(SETTLE, clock)
    for path in (photo, link, tmp_path / "gone.jpg"):
        settler.seen(path)
    settler.due()
    assert len(settler) == 1
    photo.unlink()
    clock.now += SETTLE
    assert settler.due() == [] and len(settler) == 0


# --- behind a real observer -------------------------------------------------------------------


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    return tmp_path / "drop"


@pytest.fixture
def watcher(tmp_path: Path, drop: Path) -> Iterator[DropWatcher]:
    config = build_config(
        {"watch": {"drop_dir": "drop", "output_dir": "drop/enhanced", "settle_seconds": SETTLE}},
        data_dir=tmp_path,
    )
    queued = threading.Event()
    instance = DropWatcher(config.watch, config.db_path, on_queued=queued.set)
    instance.queued = queued  # type: ignore[attr-defined]
    yield instance
    instance.stop()


def queued_jobs(watcher: DropWatcher) -> dict[str, str]:
    with Database(watcher.db_path) as db:
        return {
            Path(row["input_path"]).name: row["sha256"] for row in sql_all(db, "SELECT * FROM jobs")
        }


def wait_for_jobs(watcher: DropWatcher, count: int, timeout: float = 10) -> dict[str, str]:
    def enough() -> dict[str, str] | None:
        jobs = queued_jobs(watcher)
        return jobs if len(jobs) >= count else None

    return wait_until(enough, timeout, f"{count} queued jobs")


def wait_for_a_later_file(watcher: DropWatcher, drop: Path, count: int) -> dict[str, str]:
    """Drop one more photo and wait for its job: anything dropped before it has been decided.

    The settler takes files in the order they stopped changing, so once a file written after
    all the others is queued, any of them that was going to be queued is too.
    """
    (drop / "later.jpg").write_bytes(b"written after everything else")
    return wait_for_jobs(watcher, count + 1)


def test_the_observer_queues_complete_photos_once_and_ignores_the_rest(
    watcher: DropWatcher, drop: Path
) -> None:
    drop.mkdir(parents=True)
    (drop / "before-start.jpg").write_bytes(b"arrived while the worker was down")
    watcher.start()
    (drop / "enhanced").mkdir()
    (drop / "enhanced" / "old.instafly.jpg").write_bytes(b"our own output")
    (drop / "IMG_1.instafly.json").write_bytes(b"{}")
    (drop / ".DS_Store").write_bytes(b"hidden")
    (drop / "~$doc.docx").write_bytes(b"lock")
    (drop / "sub").mkdir()
    (drop / "sub" / "nested.jpg").write_bytes(b"recursive is off")
    (drop / "plain.jpg").write_bytes(b"plain photo")
    (drop / "twin.jpg").write_bytes(b"plain photo")  # same content: one job
    partial = drop / "renamed.jpg.part"
    partial.write_bytes(b"downloaded under a temp name")
    partial.rename(drop / "renamed.jpg")

    wait_for_jobs(watcher, 3)
    jobs = wait_for_a_later_file(watcher, drop, 3)
    assert sorted(jobs) == ["before-start.jpg", "later.jpg", "plain.jpg", "renamed.jpg"]
    assert jobs["renamed.jpg"] == file_sha256(drop / "renamed.jpg")
    assert watcher.queued.is_set()  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_slow_copy_is_queued_only_when_complete(watcher: DropWatcher, drop: Path) -> None:
    watcher.start()
    chunks = [bytes([n]) * 1000 for n in range(4)]
    with (drop / "slow.jpg").open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            handle.flush()
            time.sleep(1.5 * SETTLE)  # pauses longer than the settle time: open, so not taken
            assert queued_jobs(watcher) == {}
    jobs = wait_for_jobs(watcher, 1)
    assert jobs == {"slow.jpg": file_sha256(drop / "slow.jpg")}


@pytest.mark.slow
def test_a_restart_does_not_read_files_queued_before(watcher: DropWatcher, drop: Path) -> None:
    drop.mkdir(parents=True)
    photo = drop / "seen.jpg"
    photo.write_bytes(b"queued by an earlier worker")
    with Database(watcher.db_path) as db, db.transaction() as conn:
        enqueue_job(conn, str(photo), "hash-from-the-earlier-run")
    (drop / "new.jpg").write_bytes(b"new")
    watcher.start()
    wait_for_jobs(watcher, 2)
    wait_for_a_later_file(watcher, drop, 2)
    with Database(watcher.db_path) as db:
        rows = [
            (Path(r["input_path"]).name, r["sha256"]) for r in sql_all(db, "SELECT * FROM jobs")
        ]
    assert rows == [
        ("seen.jpg", "hash-from-the-earlier-run"),
        ("new.jpg", file_sha256(drop / "new.jpg")),
        ("later.jpg", file_sha256(drop / "later.jpg")),
    ]
