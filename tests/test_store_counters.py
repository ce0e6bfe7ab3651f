"""The counts kept by triggers (migration v6) always equal a recount: labelled posts and their
owners against the view, rows of posts, accounts and images against COUNT(*)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.images import record_image
from instaflyd.store.migrations import MIGRATIONS, V6_LABELLED_COUNTERS, migrate
from instaflyd.store.posts import attach_image, upsert_account, upsert_post
from instaflyd.store.stats import COUNTED_TABLES, count, labelled_count, labelled_owner_count


def view_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute("SELECT COUNT(*), COUNT(DISTINCT owner_id) FROM labelled_posts").fetchone()
    return int(row[0]), int(row[1])


def kept_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    return labelled_count(conn), labelled_owner_count(conn)


def rows_match(conn: sqlite3.Connection) -> bool:
    kept = [count(conn, table) for table in COUNTED_TABLES]
    recounted = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in COUNTED_TABLES]
    return kept == recounted


def test_every_way_a_post_becomes_or_stops_being_labelled(data_dir: Path) -> None:
    files = ImageFiles(data_dir / "images")
    with Database(data_dir / "instafly.db") as db, db.transaction() as conn:
        steps = []

        def check(what: str) -> None:
            steps.append((what, kept_counts(conn), view_counts(conn)))
            assert rows_match(conn), what

        image = files.put(b"image one", "jpg")
        record_image(conn, image, 10, 10, 9)
        owner = AccountRecord("1", username="one")  # followers not known yet
        upsert_post(conn, PostRecord("p1", "photo", owner=owner, like_count=5))
        attach_image(conn, "p1", image.sha256)
        check("no follower count yet")
        upsert_account(conn, AccountRecord("1", follower_count=100))
        check("the profile arrives")
        upsert_post(conn, PostRecord("p2", "photo", owner=owner))  # hidden likes
        other = files.put(b"image two", "jpg")
        record_image(conn, other, 10, 10, 9)
        attach_image(conn, "p2", other.sha256)
        check("hidden likes")
        upsert_post(conn, PostRecord("p2", "photo", owner=owner, like_count=0))
        check("likes shown later, zero")
        upsert_post(conn, PostRecord("p3", "video", owner=owner, like_count=9))
        attach_image(conn, "p3", other.sha256)
        check("a video")
        upsert_post(conn, PostRecord("p3", "carousel", owner=owner, like_count=9))
        check("seen again as a carousel")
        upsert_account(conn, AccountRecord("1", follower_count=0))
        check("followers drop to zero")
        upsert_account(conn, AccountRecord("1", follower_count=7))
        check("and come back")
        second = AccountRecord("2", follower_count=50)
        upsert_post(conn, PostRecord("p4", "photo", owner=second, like_count=3))
        check("a second owner, no image yet")
        third = files.put(b"image three", "jpg")
        record_image(conn, third, 10, 10, 11)
        attach_image(conn, "p4", third.sha256)
        check("its image")
        conn.execute("UPDATE posts SET owner_id = '2' WHERE id = 'p1'")
        check("a post moves to another owner")
        conn.execute("DELETE FROM posts WHERE id = 'p2'")
        check("a post deleted")
        conn.execute("DELETE FROM image_names")
        conn.execute("UPDATE posts SET image_sha256 = NULL WHERE image_sha256 = ?", (third.sha256,))
        conn.execute("DELETE FROM images WHERE sha256 = ?", (third.sha256,))
        check("an image deleted")

    for what, kept, view in steps:
        assert kept == view, what
    assert [kept for _, kept, _ in steps] == [
        (0, 0), (1, 1), (1, 1), (2, 1), (2, 1), (3, 1), (0, 0), (3, 1),
        (3, 1), (4, 2), (4, 2), (3, 2), (2, 2),
    ]  # fmt: skip


def test_many_random_captures_keep_the_counts_exact(data_dir: Path) -> None:
    rng = np.random.default_rng(7)
    files = ImageFiles(data_dir / "images")
    with Database(data_dir / "instafly.db") as db:
        for batch in range(5):
            with db.transaction() as conn:
                for n in range(120):
                    owner = str(rng.integers(12))
                    followers = [None, 0, int(rng.integers(1, 10_000))][rng.integers(3)]
                    if rng.random() < 0.3:
                        upsert_account(conn, AccountRecord(owner, follower_count=followers))
                        continue
                    post_id = f"p{rng.integers(200)}"
                    kind = ["photo", "carousel", "video", "reel"][rng.integers(4)]
                    likes = None if rng.random() < 0.2 else int(rng.integers(0, 500))
                    record = AccountRecord(owner, follower_count=followers)
                    upsert_post(conn, PostRecord(post_id, kind, owner=record, like_count=likes))
                    if rng.random() < 0.7:
                        stored = files.put(f"image {batch} {n}".encode(), "jpg")
                        record_image(conn, stored, 1, 1, 1)
                        attach_image(conn, post_id, stored.sha256)
                assert kept_counts(conn) == view_counts(conn)
                assert rows_match(conn)
        assert kept_counts(db.conn)[0] > 20 and count(db.conn, "posts") > 100


def test_the_migration_counts_what_was_already_there(data_dir: Path) -> None:
    path = data_dir / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn, target=MIGRATIONS.index(V6_LABELLED_COUNTERS))  # the schema before v6
    files = ImageFiles(data_dir / "images")
    conn.execute("BEGIN")
    for i in range(30):  # rows as the code of v5 wrote them (today's upsert knows later columns)
        conn.execute(
            "INSERT OR IGNORE INTO accounts (id, follower_count, first_seen, last_seen)"
            " VALUES (?, ?, 0, 0)",
            (str(i % 4), 100 if i % 4 else None),
        )
        conn.execute(
            "INSERT INTO posts (id, owner_id, media_type, like_count, first_seen, last_seen)"
            " VALUES (?, ?, 'photo', ?, 0, 0)",
            (f"p{i}", str(i % 4), i),
        )
        stored = files.put(f"old image {i}".encode(), "jpg")
        record_image(conn, stored, 1, 1, 1)
        attach_image(conn, f"p{i}", stored.sha256)
    conn.execute("COMMIT")
    migrate(conn)
    assert kept_counts(conn) == view_counts(conn) == (22, 3)
    assert rows_match(conn) and count(conn, "posts") == 30
    conn.close()
