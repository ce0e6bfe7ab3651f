"""A really damaged database file: a broken header, or garbage in the middle of the file.

A broken header ("file is not a database") is moved aside, kept, and the box starts from the
latest backup, or empty when there is none; damage in the middle is found by quick_check and
shown with what to do, and the page answers with that instead of a generic 500.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import sql_all, sql_scalar, wait_until
from support_daemon import daemon_config, running_daemon, seed_store
from support_faults import logged_in

from instaflyd import repairs
from instaflyd.backup.archive import make_backup
from instaflyd.backup.rotation import backup_name
from instaflyd.config import Config, build_config, load_config
from instaflyd.daemon.store_recovery import DAMAGED, IntegrityCheck, open_store
from instaflyd.repairs import RepairsRegistry
from instaflyd.store import Database, StoreError
from instaflyd.store.integrity import damage_of, quick_check

PAGE = 4096


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return build_config({"data_dir": str(tmp_path / "data")})


def posts(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0])


def break_header(path: Path) -> None:
    """Garbage over the first 100 bytes: SQLite no longer knows the file."""
    with path.open("r+b") as handle:
        handle.write(os.urandom(100))


def break_the_middle(path: Path) -> int:
    """Garbage over every page of the posts table but its first (SQLite's dbstat says which):
    the header and the schema stay sound, as with a card that lost a few blocks. Returns the
    page numbers' count."""
    with sqlite3.connect(path) as conn:
        pages = [row[0] for row in conn.execute("SELECT pageno FROM dbstat WHERE name = 'posts'")]
    conn.close()
    assert len(pages) > 3 and max(pages) * PAGE < path.stat().st_size
    with path.open("r+b") as handle:
        for page in pages[1:]:
            handle.seek((page - 1) * PAGE)
            handle.write(os.urandom(PAGE))
    return len(pages) - 1


def damaged_files(config: Config) -> list[str]:
    return sorted(p.name for p in config.data_dir.glob("instafly.db.damaged-*"))


def test_a_broken_header_is_moved_aside_and_the_latest_backup_put_back(config: Config) -> None:
    seed_store(config.data_dir, posts=12)
    config.backup.dir.mkdir(parents=True)
    backup = config.backup.dir / backup_name(time.time() - 3600)
    make_backup(config, backup)
    seed_store(config.data_dir, posts=5, start=100)  # captured after the backup: lost
    original = config.db_path.read_bytes()
    break_header(config.db_path)
    with pytest.raises(StoreError) as refused:
        Database(config.db_path)
    assert damage_of(refused.value) == "not_a_database"

    db, recovery = open_store(config)
    try:
        assert recovery is not None
        assert recovery.backup == backup and recovery.posts == 12
        assert recovery.damage == "file is not a database"
        assert sql_scalar(db, "SELECT COUNT(*) FROM posts") == 12
        [(kind, message)] = sql_all(db, "SELECT kind, message FROM events WHERE level = 'error'")
    finally:
        db.close()
    assert kind == "store_replaced"
    assert message.startswith("The database could not be read (file is not a database). The box")
    assert "started again from the latest backup, of " in message and "(12 posts)" in message
    # The damaged file is kept, dated, byte for byte (but for the broken header).
    [kept] = damaged_files(config)
    assert kept.startswith("instafly.db.damaged-") and kept == recovery.kept_as.name
    assert (config.data_dir / kept).read_bytes()[100:] == original[100:]
    title, _, action = recovery.problem()
    assert title == "The database was damaged and has been replaced"
    assert f"kept as {kept} in the data folder" in action

    # Opened again (the next start): nothing more is moved or restored.
    db, again = open_store(config)
    db.close()
    assert again is None and damaged_files(config) == [kept]


def test_a_broken_header_without_a_backup_starts_empty_and_says_so(config: Config) -> None:
    seed_store(config.data_dir, posts=12)
    break_header(config.db_path)
    db, recovery = open_store(config)
    db.close()
    assert recovery is not None and recovery.backup is None and recovery.posts == 0
    assert posts(config.db_path) == 0
    assert recovery.problem()[1] == (
        "The database could not be read (file is not a database). The box started again with an"
        " empty database (there was no backup)."
    )
    assert len(damaged_files(config)) == 1


def test_a_damaged_backup_is_not_used_the_box_starts_empty_and_says_why(config: Config) -> None:
    seed_store(config.data_dir, posts=12)
    config.backup.dir.mkdir(parents=True)
    backup = config.backup.dir / backup_name(time.time() - 3600)
    make_backup(config, backup)
    size = backup.stat().st_size
    with backup.open("r+b") as handle:  # the database inside the backup, broken
        handle.seek(size // 2)
        handle.write(os.urandom(PAGE * 4))
    break_header(config.db_path)
    db, recovery = open_store(config)
    db.close()
    assert recovery is not None and recovery.backup is None and recovery.posts == 0
    assert recovery.restore_error
    assert "the latest backup could not be used: " in recovery.problem()[1]


@pytest.mark.slow
def test_damage_in_the_middle_is_a_repairs_card_and_the_page_says_what_to_do(
    config: Config,
) -> None:
    seed_store(config.data_dir, posts=400, owners=40)
    client = logged_in(config)  # the page on its own, before the damage
    Database(config.db_path).close()  # the WAL is folded into the file
    assert break_the_middle(config.db_path) > 2

    with Database(config.db_path) as db:  # the header is sound: it opens
        problems = quick_check(db.conn)
        assert problems and len(problems) <= 3
        registry = RepairsRegistry()
        repairs.install(registry)
        try:
            assert IntegrityCheck(db).tick() == problems
        finally:
            repairs.install(None)
    [problem] = registry.problems()
    assert (problem.id, problem.severity) == (DAMAGED, "error")
    assert problem.sentence.startswith("The database is damaged in places")
    assert "instaflyd restore FILE --force" in problem.action

    page = client.get("/")
    assert page.status_code == 503
    html = page.get_data(as_text=True)
    assert "The box cannot read part of its database" in html
    assert "instaflyd restore FILE --force" in html
    api = client.get("/api/status")
    assert api.status_code == 503
    assert api.get_json()["error"].startswith("the database is damaged: ")


@pytest.mark.slow
def test_the_daemon_on_a_broken_header_runs_from_the_backup_and_the_page_says_so(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    config_path, web_port, proxy_port = daemon_config(tmp_path, data)
    config = load_config(config_path)
    seed_store(data, posts=12)
    config.backup.dir.mkdir(parents=True)
    make_backup(config, config.backup.dir / backup_name(time.time() - 3600))
    break_header(config.db_path)
    with running_daemon(config_path, data, web_port, proxy_port) as daemon:
        status = wait_until(
            lambda: (s := daemon.status())["instafly"]["state"] == "running" and s,
            60,
            "the daemon to run",
            process=daemon.process,
            output=daemon.output,
        )
        problems = {p["id"]: p for p in status["repairs"]["problems"]}
        assert problems["store.replaced"]["severity"] == "warning"
        assert "started again from the latest backup" in problems["store.replaced"]["sentence"]
        assert status["capture"]["totals"]["posts"] == 12
        code, page = daemon.get("/")
        assert code == 200
        assert b"The database was damaged and has been replaced" in page
        assert daemon.process.poll() is None  # running, not exited into a restart loop
    assert len(damaged_files(config)) == 1
    assert "file is not a database" in daemon.output()
