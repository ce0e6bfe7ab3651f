"""Posts from an imported dump are told apart from the proxy's own captures: "nothing captured"
is about phones using the proxy, not a dump's old capture times (issue: "9836 days ago")."""

from __future__ import annotations

from pathlib import Path

from helpers import FIXTURES

from instaflyd.capture.dumps import import_flow_files
from instaflyd.config import build_config
from instaflyd.status.history import quiet_capture
from instaflyd.store import AccountRecord, Database, PostRecord
from instaflyd.store.posts import upsert_post
from instaflyd.store.stats import count, last_capture_time

DUMP = FIXTURES / "instagram" / "sample.flows"


def test_an_imported_dump_is_no_capture_and_a_later_proxy_capture_is(tmp_path: Path) -> None:
    config = build_config({"model": {"weights": "none"}}, data_dir=tmp_path / "data")
    result = import_flow_files(config, [DUMP])
    assert result.summary.posts_new > 0
    with Database(config.db_path) as db:
        assert count(db.conn, "posts") == result.summary.posts_new
        assert last_capture_time(db.conn) is None  # only imported posts: nothing captured
        assert (
            quiet_capture(None, 2e9) == "Nothing captured yet: no phone has used the proxy so far."
        )
        post_id = db.conn.execute("SELECT id FROM posts LIMIT 1").fetchone()[0]
        with db.transaction() as conn:  # the proxy sees one of the imported posts, and a new one
            upsert_post(conn, PostRecord(post_id, "photo", like_count=3), now=1_800_000_000)
            upsert_post(
                conn, PostRecord("new1", "photo", owner=AccountRecord("o1")), now=1_800_000_100
            )
        assert last_capture_time(db.conn) == 1_800_000_100
    import_flow_files(config, [DUMP])  # imported again: the captured posts stay captured
    with Database(config.db_path) as db:
        assert last_capture_time(db.conn) == 1_800_000_100
        seen = db.conn.execute("SELECT last_seen FROM posts WHERE id = ?", (post_id,)).fetchone()
        assert seen[0] == 1_800_000_000  # an old dump does not make a post look older


def test_the_last_capture_is_found_by_the_partial_index(tmp_path: Path) -> None:
    with Database(tmp_path / "instafly.db") as db:
        plan = db.conn.execute(
            "EXPLAIN QUERY PLAN SELECT MAX(last_seen) FROM posts WHERE imported = 0"
        ).fetchall()
    assert "posts_captured_last_seen" in " ".join(str(row[-1]) for row in plan)
