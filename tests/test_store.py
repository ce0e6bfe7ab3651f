"""The store: every table round-trips, old databases migrate, several processes share it safely."""

from __future__ import annotations

import logging
import math
import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers import sql_all, sql_one, sql_scalar

from instaflyd.fsutil import TEMP_PREFIX, remove_stale_temps
from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord, StoreError
from instaflyd.store.events import (
    add_to_counter,
    counters,
    log_event,
    recent_events,
    record_event,
)
from instaflyd.store.images import forget_unused_images, prune_unused_images, record_image
from instaflyd.store.jobs import (
    JobCounts,
    claim_next_job,
    enqueue_job,
    finish_job,
    get_job,
    jobs_by_state,
)
from instaflyd.store.labels import LIKES_AND_IMAGE_KNOWN, label_target
from instaflyd.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from instaflyd.store.posts import (
    attach_image,
    get_account,
    get_post,
    post_for_image_name,
    upsert_account,
    upsert_post,
)
from instaflyd.store.records import image_file_name
from instaflyd.store.stats import count, labelled_count
from instaflyd.store.tls import TlsFailure, count_tls_failure, tls_failures
from instaflyd.store.versions import (
    add_model_version,
    current_model_version,
    finish_training_run,
    in_progress,
    latest_training_run,
    next_model_version,
    record_training_progress,
    start_training_run,
)

CDN = "https://scontent-ams4-1.cdninstagram.com/v/t51.2885-15/e35/s1080x1080"


def photo(post_id: str, owner: str = "42", likes: int | None = 10, **extra: object) -> PostRecord:
    return PostRecord(
        id=post_id, media_type="photo", shortcode=f"sc{post_id}",
        owner=AccountRecord(id=owner), like_count=likes, comment_count=2, taken_at=1500000000,
        image_urls=[f"{CDN}/{post_id}_1_n.jpg?oh=sig"], source="test", **extra,
    )  # fmt: skip


def store_image(db: Database, files: ImageFiles, data: bytes, width: int, height: int) -> str:
    stored = files.put(data, "jpg")
    with db.transaction() as conn:
        record_image(conn, stored, width, height, len(data))
    return stored.sha256


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "instafly.db")
    yield database
    database.close()


def test_opening_sets_wal_busy_timeout_foreign_keys_and_current_schema(db: Database) -> None:
    assert sql_scalar(db, "PRAGMA journal_mode") == "wal"
    assert sql_scalar(db, "PRAGMA busy_timeout") == 30000
    assert sql_scalar(db, "PRAGMA foreign_keys") == 1
    assert sql_scalar(db, "PRAGMA user_version") == SCHEMA_VERSION == len(MIGRATIONS)


def test_accounts_and_posts_round_trip_with_first_and_last_seen(db: Database) -> None:
    with db.transaction() as conn:
        assert upsert_account(conn, AccountRecord("42", "alice", "Alice A", 1000), now=100.0)
        assert upsert_post(conn, photo("1"), now=100.0) == "new"
    with db.transaction() as conn:
        assert not upsert_account(conn, AccountRecord("42", follower_count=1500), now=200.0)
        assert upsert_post(conn, photo("1", likes=25), now=200.0) == "updated"
        assert upsert_post(conn, photo("1", likes=None), now=300.0) == "updated"
    account = get_account(db.conn, "42")
    assert asdict(account) == {
        "id": "42", "username": "alice", "full_name": "Alice A", "follower_count": 1500,
        "first_seen": 100.0, "last_seen": 300.0,
    }  # fmt: skip
    post = get_post(db.conn, "1")
    assert asdict(post) == {
        "id": "1", "shortcode": "sc1", "owner_id": "42", "media_type": "photo",
        "like_count": 25, "comment_count": 2, "taken_at": 1500000000,
        "image_url": f"{CDN}/1_1_n.jpg?oh=sig", "image_sha256": None, "source": "test",
        "first_seen": 100.0, "last_seen": 300.0,
    }  # fmt: skip
    assert post_for_image_name(db.conn, "1_1_n.jpg") == "1"
    assert post_for_image_name(db.conn, "other_n.jpg") is None


def test_hidden_likes_are_stored_as_null_never_zero(db: Database) -> None:
    with db.transaction() as conn:
        upsert_post(conn, photo("7", likes=None))
    assert get_post(db.conn, "7").like_count is None


def test_images_round_trip_and_the_largest_variant_is_kept(db: Database, tmp_path: Path) -> None:
    files = ImageFiles(tmp_path / "images")
    small = store_image(db, files, b"small-jpeg", 320, 320)
    large = store_image(db, files, b"large-jpeg", 1080, 1080)
    row = sql_one(db, "SELECT * FROM images WHERE sha256 = ?", (large,))
    assert (row["ext"], row["width"], row["height"], row["bytes"]) == ("jpg", 1080, 1080, 10)
    assert files.path_for(large, "jpg") == tmp_path / "images" / large[:2] / f"{large}.jpg"
    assert files.path_for(large, "jpg").read_bytes() == b"large-jpeg"
    with db.transaction() as conn:
        upsert_post(conn, photo("1"))
        assert attach_image(conn, "1", small)
        assert attach_image(conn, "1", large)
        assert not attach_image(conn, "1", small)  # smaller than what the post has
    assert get_post(db.conn, "1").image_sha256 == large


def test_images_no_post_uses_are_removed_row_and_file(db: Database, tmp_path: Path) -> None:
    files = ImageFiles(tmp_path / "images")
    small = store_image(db, files, b"small-jpeg", 320, 320)
    large = store_image(db, files, b"large-jpeg", 1080, 1080)
    shared = store_image(db, files, b"shared-jpeg", 640, 640)
    with db.transaction() as conn:
        for post_id in ("1", "2", "3"):
            upsert_post(conn, photo(post_id))
        attach_image(conn, "1", small)
        attach_image(conn, "1", large)
        attach_image(conn, "2", shared)
        attach_image(conn, "3", shared)
        # Only the images asked about, and only while no post uses them.
        assert forget_unused_images(conn, [large, shared]) == []
        assert forget_unused_images(conn, [small]) == [(small, "jpg")]
    files.remove([(small, "jpg")])
    assert not files.path_for(small, "jpg").exists()
    # A store from before: rows and files nothing uses any more, found and removed at once.
    left_over = store_image(db, files, b"left-over", 100, 100)
    assert prune_unused_images(db, files) == 1
    assert not files.path_for(left_over, "jpg").exists()
    assert sorted(r[0] for r in db.conn.execute("SELECT sha256 FROM images")) == sorted(
        [large, shared]
    )
    assert count(db.conn, "images") == 2
    assert prune_unused_images(db, files) == 0


def test_an_image_written_twice_is_stored_once(db: Database, tmp_path: Path) -> None:
    files = ImageFiles(tmp_path / "images")
    first = files.put(b"same bytes", "jpg")
    second = files.put(b"same bytes", "jpg")
    assert (first.created, second.created) == (True, False)
    assert first.path == second.path
    with db.transaction() as conn:
        assert record_image(conn, first, 1, 1, 10)
        assert not record_image(conn, second, 1, 1, 10)
    assert sql_scalar(db, "SELECT COUNT(*) FROM images") == 1
    assert [p.name for p in (tmp_path / "images").rglob("*") if p.is_file()] == [first.path.name]


def test_a_crash_between_temp_write_and_rename_leaves_no_visible_half_file(tmp_path: Path) -> None:
    root = tmp_path / "images"
    crash = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from instaflyd.store.images import ImageFiles
        os.replace = lambda *args: os._exit(9)  # die after the temp file is written
        ImageFiles(Path({str(root)!r})).put(b"x" * 100000, "jpg")
    """)
    result = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name.startswith(TEMP_PREFIX)  # hidden, never a real name
    stored = ImageFiles(root).put(b"x" * 100000, "jpg")
    assert stored.created and stored.path.read_bytes() == b"x" * 100000
    assert remove_stale_temps(stored.path.parent, min_age_seconds=0) == 1
    assert [p.name for p in root.rglob("*") if p.is_file()] == [stored.path.name]


def test_labelled_posts_follow_the_data_rules(db: Database, tmp_path: Path) -> None:
    files = ImageFiles(tmp_path / "images")
    sha = store_image(db, files, b"img", 10, 10)
    with db.transaction() as conn:
        upsert_account(conn, AccountRecord("42", follower_count=200))
        upsert_account(conn, AccountRecord("43"))  # follower count never seen
        for post in (
            photo("ok", likes=50),
            photo("hidden", likes=None),
            photo("nofollowers", owner="43"),
            photo("noimage"),
            PostRecord(id="vid", media_type="video", owner=AccountRecord("42"), like_count=5),
            PostRecord(id="car", media_type="carousel", owner=AccountRecord("42"), like_count=20),
        ):
            upsert_post(conn, post)
        for post_id in ("ok", "hidden", "nofollowers", "vid", "car"):
            attach_image(conn, post_id, sha)
        upsert_post(conn, photo("zero", likes=0))
        attach_image(conn, "zero", sha)
    rows = sql_all(db, "SELECT id, like_rate FROM labelled_posts ORDER BY id")
    assert [(r["id"], r["like_rate"]) for r in rows] == [("car", 0.1), ("ok", 0.25), ("zero", 0.0)]
    assert labelled_count(db.conn) == 3
    # The view (a migration) and the rule's SQL in store/labels.py agree, post by post.
    by_rule = sql_all(
        db,
        "SELECT p.id FROM posts AS p JOIN accounts AS a ON a.id = p.owner_id"
        f" WHERE {LIKES_AND_IMAGE_KNOWN} AND a.follower_count > 0 ORDER BY p.id",
    )
    assert [r["id"] for r in by_rule] == [r["id"] for r in rows]
    # No likes is half a like: finite, and below one like of the same owner.
    assert label_target(0, 200) == math.log(0.5 / 200) < label_target(1, 200)


def test_events_counters_and_tls_failures_round_trip(db: Database) -> None:
    with db.transaction() as conn:
        log_event(conn, "proxy", "warning", "parse_error", "could not parse /api/v1/x")
        log_event(conn, "proxy", "info", "started", "listening on :8080")
        add_to_counter(conn, "flows", 3)
        add_to_counter(conn, "flows")
        count_tls_failure(conn, "i.instagram.com", "certificate unknown", now=10.0)
        count_tls_failure(conn, "i.instagram.com", "handshake failure", now=20.0)
    assert [e.kind for e in recent_events(db.conn)] == ["started", "parse_error"]
    assert [e.message for e in recent_events(db.conn, min_level="warning")] == [
        "could not parse /api/v1/x"
    ]
    assert counters(db.conn) == {"flows": 4}
    [failure] = tls_failures(db.conn)
    assert failure == TlsFailure(
        host="i.instagram.com",
        count=2,
        first_seen=10.0,
        last_seen=20.0,
        last_error="handshake failure",
    )


def test_record_event_commits_on_its_own_echoes_and_never_raises(
    db: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `instaflyd` commands run in this process may have set up logging, which stops propagation.
    monkeypatch.setattr(logging.getLogger("instafly"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("instafly"), "handlers", [])  # theirs may be closed
    with caplog.at_level("INFO", logger="instafly"):
        record_event(
            db, "worker", "error", "enhancer_crashed", "the enhancer exited; again", echo=True
        )
        record_event(db, "worker", "info", "quiet", "not echoed")
    [event] = recent_events(db.conn, min_level="error")
    assert (event.component, event.kind) == ("worker", "enhancer_crashed")
    echoed = [(r.levelname, r.message) for r in caplog.records if r.name == "instafly.worker"]
    assert echoed == [("ERROR", "the enhancer exited; again")]

    db.close()  # a store that fails: the event is lost, the caller goes on, the log says why
    caplog.clear()
    with caplog.at_level("WARNING", logger="instafly"):
        record_event(db, "supervisor", "warning", "exited", "proxy exited")
    store_lines = [r.message for r in caplog.records if r.name == "instafly.store"]
    assert [line.startswith("could not write the event log") for line in store_lines] == [True]


def test_model_versions_and_training_runs_round_trip(db: Database) -> None:
    assert current_model_version(db.conn) is None
    assert next_model_version(db.conn) == 1
    with db.transaction() as conn:
        run = start_training_run(conn, pid=1234, epochs=10, now=1.0)
        record_training_progress(conn, run, 3, 0.5, {"val_srcc": 0.4}, now=2.0)
        add_model_version(
            conn,
            1,
            "models/v0001",
            300,
            310,
            {"val_srcc": 0.61, "val_pairwise_accuracy": 0.7},
            promoted=True,
            now=3.0,
        )
        add_model_version(conn, 2, "models/v0002", 320, 330, {"val_srcc": 0.5}, promoted=False)
        finish_training_run(conn, run, "done", version=1, now=4.0)
    current = current_model_version(db.conn)
    assert (current.version, current.path, current.samples, current.promoted_at) == (
        1,
        "models/v0001",
        300,
        3.0,
    )
    assert current.metrics == {"val_srcc": 0.61, "val_pairwise_accuracy": 0.7}  # parsed once
    assert current.promoted is True  # a bool, not SQLite's 1
    assert next_model_version(db.conn) == 3
    last = latest_training_run(db.conn)
    assert (last.state, last.epoch, last.loss, last.version, last.finished) == (
        "done",
        3,
        0.5,
        1,
        4.0,
    )
    assert last.metrics == {"val_srcc": 0.4}
    current = current_model_version(db.conn)
    assert (current.version, current.val_srcc) == (1, 0.61)
    assert in_progress(latest_training_run(db.conn)) is False


def test_jobs_round_trip_one_job_per_content_and_atomic_claims(db: Database) -> None:
    with db.transaction() as conn:
        first = enqueue_job(conn, "/drop/a.jpg", "aaa", now=1.0)
        assert enqueue_job(conn, "/drop/copy-of-a.jpg", "aaa") is None
        second = enqueue_job(conn, "/drop/b.jpg", "bbb", now=2.0)
    with db.transaction() as conn:
        claimed = claim_next_job(conn, worker_pid=77, now=5.0)
    assert (claimed.id, claimed.state, claimed.attempts, claimed.worker_pid) == (
        first,
        "running",
        1,
        77,
    )
    with db.transaction() as conn:
        finish_job(
            conn,
            first,
            "done",
            output_path="/out/a.instafly.jpg",
            score_before=0.1,
            score_after=0.3,
            model_version=1,
            now=6.0,
        )
        finish_job(conn, second, "rejected", reason="not an image: the file is a text document")
    done = get_job(db.conn, first)
    assert (done.state, done.score_after, done.finished) == ("done", 0.3, 6.0)
    assert get_job(db.conn, second).reason == "not an image: the file is a text document"
    assert jobs_by_state(db.conn) == JobCounts(done=1, rejected=1)
    assert jobs_by_state(db.conn).items() == [
        ("queued", 0), ("waiting_model", 0), ("running", 0), ("done", 1), ("rejected", 1),
        ("failed", 0),
    ]  # fmt: skip


def test_a_v1_database_migrates_with_its_rows_intact(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute("INSERT INTO accounts VALUES ('42', 'alice', NULL, 900, 1.0, 2.0)")
    conn.execute("INSERT INTO images VALUES ('abc', 'jpg', 640, 640, 1234, 1.0)")
    conn.execute(
        "INSERT INTO posts VALUES ('1', 'sc1', '42', 'photo', 90, 3, 1500000000,"
        " 'https://x/1_n.jpg', 'abc', 'legacy', 1.0, 2.0)"
    )
    conn.execute("INSERT INTO image_names VALUES ('1_n.jpg', '1')")
    conn.execute(
        "INSERT INTO events (ts, component, level, kind, message)"
        " VALUES (1.0, 'proxy', 'info', 'started', 'hello')"
    )
    conn.close()

    with Database(path) as db:
        assert sql_scalar(db, "PRAGMA user_version") == SCHEMA_VERSION
        assert tuple(sql_one(db, "SELECT * FROM accounts")) == ("42", "alice", None, 900, 1.0, 2.0)
        assert tuple(sql_one(db, "SELECT * FROM posts")) == (
            "1",
            "sc1",
            "42",
            "photo",
            90,
            3,
            1500000000,
            "https://x/1_n.jpg",
            "abc",
            "legacy",
            1.0,
            2.0,
            0,  # v10: captured by the proxy, not imported
        )
        assert sql_scalar(db, "SELECT message FROM events") == "hello"
        assert [tuple(r) for r in sql_all(db, "SELECT id, like_rate FROM labelled_posts")] == [
            ("1", 0.1)
        ]
        with db.transaction() as conn:
            assert enqueue_job(conn, "/drop/x.jpg", "x") == 1


def test_a_database_from_a_newer_instafly_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer = rf"schema version {SCHEMA_VERSION + 1}, newer than this Instafly \({SCHEMA_VERSION}\)"
    with pytest.raises(StoreError, match=newer):
        Database(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the database: file is not a database"):
        Database(path)


def _writer(path: str, worker: int, rounds: int) -> None:
    """One of several processes: its own posts, shared posts, a shared counter, all at once."""
    with Database(Path(path)) as db:
        for i in range(rounds):
            with db.transaction() as conn:
                upsert_post(conn, photo(f"w{worker}-{i}", owner=f"o{worker}"))
                upsert_post(conn, photo(f"shared-{i % 10}", likes=worker * 1000 + i))
                add_to_counter(conn, "flows")


@pytest.mark.slow
def test_four_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    Database(path).close()
    rounds = 150
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), w, rounds)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    with Database(path) as db:
        assert sql_scalar(db, "SELECT COUNT(*) FROM posts WHERE id LIKE 'w%'") == 4 * rounds
        assert sql_scalar(db, "SELECT COUNT(*) FROM posts WHERE id LIKE 'shared-%'") == 10
        assert sql_scalar(db, "SELECT COUNT(*) FROM accounts") == 5
        assert counters(db.conn) == {"flows": 4 * rounds}
        assert sql_scalar(db, "PRAGMA integrity_check") == "ok"


def test_image_file_name_ignores_host_size_and_signature() -> None:
    a = "https://scontent-ams4-1.cdninstagram.com/v/t51.2885-15/s640x640/sh0.08/e35/12_34_n.jpg?oh=1&oe=2"
    b = "https://instagram.fxyz1-1.fna.fbcdn.net/v/t51.2885-15/e35/p1080x1080/12_34_n.jpg?_nc_ht=x"
    assert image_file_name(a) == image_file_name(b) == "12_34_n.jpg"
