"""Backups: a file made while the store is written, restored onto a fresh install, gives back the
same posts, labels, models, jobs, history, password and CA; bad files are refused with a reason
and change nothing; the daily backups rotate; a damaged database comes back from the latest."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from helpers import run_cli, write_config
from support_backup import PASSWORD, data_files, fill_appliance
from support_model import add_generated_posts, tiny_config

from instaflyd.backup import (
    BackupError,
    latest_backup,
    list_backups,
    make_backup,
    read_manifest,
    restore,
    restore_database,
    scheduled_backup,
)
from instaflyd.config import Config
from instaflyd.store import Database, ImageFiles
from instaflyd.store.export import write_csv
from instaflyd.store.history import history_rows
from instaflyd.store.jobs import recent_jobs
from instaflyd.store.migrations import SCHEMA_VERSION
from instaflyd.store.snapshot import StoreCounts, store_counts
from instaflyd.store.versions import current_model_version, model_version_numbers
from instaflyd.web.password import read_password_hash


def _state(config: Config) -> dict[str, object]:
    """What a household would miss: every post and label (as exported), the models, the jobs and
    the history, with the data folder's own path taken out."""
    with Database(config.db_path) as db:
        out = io.StringIO()
        write_csv(db.conn, ImageFiles(config.images_dir), out)
        current = current_model_version(db.conn)
        return {
            "csv": out.getvalue().replace(str(config.data_dir), "DATA"),
            "counts": store_counts(db.conn),
            "model": current.version if current else None,
            "versions": model_version_numbers(db.conn),
            "jobs": [(j.id, j.state, j.reason, j.score_after) for j in recent_jobs(db.conn, 100)],
            "history": [(r.tier, r.bucket, r.sample) for r in history_rows(db.conn, 86_400, 0)],
        }


@pytest.fixture
def appliance(tmp_path: Path) -> Config:
    config = tiny_config(tmp_path / "old-box")
    fill_appliance(config)
    return config


def test_a_restore_on_a_fresh_install_gives_back_posts_labels_models_jobs_and_history(
    appliance: Config, tmp_path: Path
) -> None:
    before = _state(appliance)
    assert before["counts"].labelled == 24 and before["counts"].jobs == 4  # type: ignore[attr-defined]
    backup = tmp_path / "usb" / "box.tar"

    manifest = make_backup(appliance, backup)

    assert (manifest.format, manifest.schema_version) == ("instafly-backup", SCHEMA_VERSION)
    assert manifest.counts == before["counts"]
    assert manifest.counts.promoted_models == 1 and manifest.counts.history >= 365
    assert backup.stat().st_mode & 0o777 == 0o600
    assert read_manifest(backup) == manifest

    fresh = tiny_config(tmp_path / "new-box")
    Database(fresh.db_path).close()  # the fresh install's empty store
    result = restore(fresh, backup)

    assert _state(fresh) == before
    assert result.counts == before["counts"]
    old_files, new_files = data_files(appliance.data_dir), data_files(fresh.data_dir)
    for name in ("models/v0001/model.weights.h5", "mitmproxy/mitmproxy-ca.pem", "web-password"):
        assert new_files[name] == old_files[name]
    images = sorted(n for n in old_files if n.startswith("images/"))
    assert len(images) == 24 and all(new_files[n] == old_files[n] for n in images)
    # Not the rejected model, not the cache: both would only cost space.
    assert not any(n.startswith(("models/v0002", "features/")) for n in new_files)
    assert (fresh.mitmproxy_dir / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600
    assert (fresh.data_dir / "web-password").stat().st_mode & 0o777 == 0o600
    hashed = read_password_hash(fresh.data_dir)
    assert hashed is not None and hashed.matches(PASSWORD)


def test_a_backup_taken_while_another_process_writes_is_one_consistent_moment(
    appliance: Config, tmp_path: Path
) -> None:
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:  # the capture writer, adding posts the whole time
        start = 1000
        while not stop.is_set():
            add_generated_posts(appliance, 5, start=start, side=16)
            start += 5
            written.append(start)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not written:  # a commit has happened before the backup starts
            stop.wait(0.01)
        manifests = [make_backup(appliance, tmp_path / f"b{n}.tar") for n in range(3)]
    finally:
        stop.set()
        thread.join()
    for n, manifest in enumerate(manifests):
        fresh = tiny_config(tmp_path / f"restored{n}")
        counts = restore(fresh, tmp_path / f"b{n}.tar").counts
        # Every post has its image and label: the copy is one moment, not a mix of two.
        assert counts == manifest.counts
        assert counts.posts == counts.labelled == counts.images
        assert counts.posts >= 29


@pytest.mark.slow
def test_the_command_line_backs_up_and_restores_and_refuses_to_overwrite_a_used_store(
    appliance: Config, tmp_path: Path
) -> None:
    config_file = write_config(
        tmp_path / "etc" / "instafly.yaml", {"data_dir": str(appliance.data_dir)}
    )
    (tmp_path / "etc" / "share-password").write_text("share secret\n")
    backup = tmp_path / "box.tar"
    made = run_cli("backup", backup, "--json", config=config_file)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["counts"]["posts"] == 24
    assert read_manifest(backup).config_files == 2

    refused = run_cli("restore", backup, config=config_file)
    assert refused.returncode == 1
    assert "already holds 24 posts" in refused.stderr and "--force" in refused.stderr

    new_config = write_config(
        tmp_path / "new-etc" / "instafly.yaml", {"data_dir": str(tmp_path / "new")}
    )
    restored = run_cli("restore", backup, config=new_config)
    assert restored.returncode == 0, restored.stderr
    assert "24 posts" in restored.stdout
    # The backup's config replaced this install's, the one before kept beside it.
    assert new_config.read_text() == config_file.read_text()
    assert (tmp_path / "new-etc" / "instafly.yaml.before-restore").exists()
    assert (tmp_path / "new-etc" / "share-password").read_text() == "share secret\n"
    assert (tmp_path / "new-etc" / "share-password").stat().st_mode & 0o777 == 0o600


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _manifest_bytes(backup: Path) -> bytes:
    with tarfile.open(backup) as tar:
        handle = tar.extractfile("manifest.json")
        assert handle is not None
        return handle.read()


def test_bad_backup_files_are_refused_with_a_reason_and_change_nothing(
    appliance: Config, tmp_path: Path
) -> None:
    good = tmp_path / "good.tar"
    make_backup(appliance, good)
    manifest = json.loads(_manifest_bytes(good))
    newer = dict(manifest, schema_version=SCHEMA_VERSION + 1)
    with tarfile.open(good) as tar:
        database = tar.extractfile("instafly.db").read()  # type: ignore[union-attr]
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    lying = dict(manifest, counts=dict(manifest["counts"], posts=25))
    cases = {
        "not a tar": (tmp_path / "x.tar", "cannot read the backup file"),
        "no manifest": (
            _tar(tmp_path / "a.tar", {"instafly.db": database}),
            "does not start with a manifest",
        ),
        "newer schema": (
            _tar(tmp_path / "b.tar", {"manifest.json": json.dumps(newer).encode()}),
            f"schema version {SCHEMA_VERSION + 1}, newer than this Instafly",
        ),
        "escaping path": (
            _tar(
                tmp_path / "c.tar",
                {
                    "manifest.json": json.dumps(manifest).encode(),
                    "instafly.db": database,
                    "data/../../evil": b"x",
                },
            ),
            "unexpected entry 'data/../../evil'",
        ),
        "counts differ": (
            _tar(
                tmp_path / "d.tar",
                {
                    "manifest.json": json.dumps(lying).encode(),
                    "instafly.db": database,
                    "data/web-password": b"x",
                },
            ),
            "does not match its manifest (posts 24 (manifest: 25))",
        ),
        "truncated": (truncated, "damaged"),
    }
    (tmp_path / "x.tar").write_bytes(b"just some bytes, not a tar file" * 100)
    for case, (file, reason) in cases.items():
        fresh = tiny_config(tmp_path / f"fresh-{case.replace(' ', '-')}")
        with pytest.raises(BackupError) as raised:
            restore(fresh, file)
        assert reason in str(raised.value), case
        assert not fresh.db_path.exists() and data_files(fresh.data_dir) == {}, case
    assert not (tmp_path / "evil").exists()


def test_daily_backups_keep_the_newest_and_the_latest_skips_a_damaged_one(
    appliance: Config, tmp_path: Path
) -> None:
    config = tiny_config(appliance.data_dir, backup={"dir": str(tmp_path / "daily"), "keep": 2})
    made = [scheduled_backup(config, now=1_800_000_000 + day * 86_400) for day in range(3)]

    assert [b.path for b in list_backups(config)] == [made[2], made[1]]
    assert made[0].name == "instafly-backup-20270115-080000.tar" and not made[0].exists()
    assert latest_backup(config) == made[2]
    damaged = config.backup.dir / "instafly-backup-20991231-000000.tar"
    damaged.write_bytes(b"half a backup")
    assert latest_backup(config) == made[2]
    assert latest_backup(tiny_config(tmp_path / "none")) is None


def test_a_daily_backup_that_would_fill_the_disk_is_skipped_with_a_reason(
    appliance: Config, tmp_path: Path
) -> None:
    config = tiny_config(
        appliance.data_dir, backup={"dir": str(tmp_path / "daily"), "min_free_mb": 10_000_000}
    )
    with pytest.raises(
        BackupError, match=r"backup skipped: .* backup.min_free_mb = 10000000 MB must stay free"
    ):
        scheduled_backup(config)
    assert list(config.backup.dir.iterdir()) == []


def test_a_damaged_database_comes_back_from_the_latest_backup(
    appliance: Config, tmp_path: Path
) -> None:
    config = tiny_config(appliance.data_dir, backup={"dir": str(tmp_path / "daily")})
    scheduled_backup(config)
    before = _state(config)
    db = config.db_path
    # A damaged file with a stale log beside it: the log must not be replayed onto the copy.
    db.write_bytes(b"SQLite format 3\x00" + b"\x13" * 8000)
    Path(str(db) + "-wal").write_bytes(b"\x00" * 4000)
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(db).execute("SELECT COUNT(*) FROM posts").fetchone()

    backup = latest_backup(config)
    assert backup is not None
    counts = restore_database(config, backup, db)

    assert isinstance(counts, StoreCounts) and counts.posts == 24
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0
    assert _state(config) == before


def test_a_restore_under_a_running_daemon_is_refused(appliance: Config, tmp_path: Path) -> None:
    backup = tmp_path / "box.tar"
    make_backup(appliance, backup)
    fresh = tiny_config(tmp_path / "new-box")
    Database(fresh.db_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(fresh.db_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(BackupError, match=rf"is open in process {holder.pid} .*stop it first"):
            restore(fresh, backup)
    finally:
        holder.kill()
        holder.wait()
    assert store_counts_of(fresh).posts == 0  # nothing was restored
    assert restore(fresh, backup).counts.posts == 24


HOLD_OPEN = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT COUNT(*) FROM posts").fetchone()
print("open", flush=True)
time.sleep(60)
"""


def store_counts_of(config: Config) -> StoreCounts:
    with Database(config.db_path) as db:
        return store_counts(db.conn)
