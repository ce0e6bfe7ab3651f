"""An upgrade keeps everything: `install.sh --system` over an install of the previous release
(its schema, a year of data, a model, jobs, the password, the config and the share's password)
installs the tested versions, migrates the store to the current schema and loses nothing.

The previous release is the store at PREVIOUS_RELEASE_SCHEMA migrations (release 0.1.0, the
first six of `MIGRATIONS`), written with that schema's own SQL: its rows are what a box running
it holds. The checks go through the current code, whatever migrations have been added since."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, jpeg_bytes

from instaflyd.config import build_config
from instaflyd.store import Database
from instaflyd.store.history import history_rows
from instaflyd.store.jobs import recent_jobs
from instaflyd.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from instaflyd.store.snapshot import schema_version_of, store_counts
from instaflyd.store.versions import current_model_version
from instaflyd.web.password import PASSWORD_FILE, read_password_hash, set_password

PREVIOUS_RELEASE_SCHEMA = 6  # release 0.1.0 (main at c3a0771)
PASSWORD = "the household's own password"
POSTS = 60
DAY = 86_400.0
INSTALL = REPO / "install.sh"


def previous_release_store(data: Path) -> dict[str, object]:
    """A store as release 0.1.0 left it after a year: returns what must survive."""
    data.mkdir(parents=True, mode=0o750)
    conn = sqlite3.connect(data / "instafly.db", isolation_level=None)
    migrate(conn, target=PREVIOUS_RELEASE_SCHEMA)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == PREVIOUS_RELEASE_SCHEMA
    now = time.time()
    images = {}
    conn.execute("BEGIN")
    for owner in range(4):
        conn.execute(
            "INSERT INTO accounts (id, username, follower_count, first_seen, last_seen)"
            " VALUES (?, ?, ?, ?, ?)",
            (f"7{owner}", f"friend{owner}", 1000 * (owner + 1), now - 300 * DAY, now),
        )
    for n in range(POSTS):
        body = jpeg_bytes(24, 24, seed=n)
        sha = hashlib.sha256(body).hexdigest()
        path = data / "images" / sha[:2] / f"{sha}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        images[f"images/{sha[:2]}/{sha}.jpg"] = body
        conn.execute(
            "INSERT INTO images (sha256, ext, width, height, bytes, stored_at)"
            " VALUES (?, 'jpg', 24, 24, ?, ?)",
            (sha, len(body), now - n * DAY),
        )
        conn.execute(
            "INSERT INTO posts (id, shortcode, owner_id, media_type, like_count, taken_at,"
            " image_sha256, source, first_seen, last_seen)"
            " VALUES (?, ?, ?, 'photo', ?, ?, ?, 'feed', ?, ?)",
            (str(900 + n), f"S{n}", f"7{n % 4}", 10 + n, int(now - n * DAY), sha,
             now - n * DAY, now - n * DAY),
        )  # fmt: skip
    conn.execute(
        "INSERT INTO model_versions (version, created, path, samples, labelled_total, metrics,"
        " val_srcc, promoted, promoted_at) VALUES (1, ?, 'models/v0001', 50, 50, ?, 0.4, 1, ?)",
        (now - 30 * DAY, json.dumps({"val_srcc": 0.4}), now - 30 * DAY),
    )
    conn.execute(
        "INSERT INTO training_runs (started, finished, state, epoch, epochs, version, message)"
        " VALUES (?, ?, 'done', 10, 10, 1, 'promoted')",
        (now - 30 * DAY, now - 30 * DAY + 600),
    )
    for n, state in enumerate(("done", "failed", "queued")):
        conn.execute(
            "INSERT INTO jobs (input_path, sha256, state, attempts, created, updated, reason,"
            " score_before, score_after, model_version) VALUES (?, ?, ?, 1, ?, ?, ?, 0.1, ?, 1)",
            (f"/srv/instafly/drop/p{n}.jpg", f"{n:064x}", state, now - n, now - n,
             "cannot read the photo" if state == "failed" else None,
             0.3 if state == "done" else None),
        )  # fmt: skip
    for day in range(365):
        t = now - day * DAY
        for tier in (300, 3600, 86400):
            conn.execute(
                "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tier, int(t // tier) * tier, t, POSTS - day // 7, 50, 60, 1000 + day, 1, 0.2),
            )
    conn.execute(
        "INSERT INTO events (ts, component, level, kind, message)"
        " VALUES (?, 'trainer', 'info', 'training_done', 'v1 promoted')",
        (now,),
    )
    conn.execute("COMMIT")
    conn.close()
    model = data / "models" / "v0001"
    model.mkdir(parents=True)
    (model / "head.weights.h5").write_bytes(b"the trained head" * 50)
    set_password(data, PASSWORD)
    return {"images": images, "password_file": (data / PASSWORD_FILE).read_text()}


def installed(venv: Path) -> dict[str, str]:
    freeze = subprocess.run(
        [venv / "bin/python", "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    pins = {}
    for line in freeze.splitlines():
        if "==" in line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-").replace(".", "-")] = version
    return pins


def locked(python: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / f"lock-py{python}.txt").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(" ")[0].split("==")
            pins[name.lower().replace("_", "-").replace(".", "-")] = version
    return pins


@pytest.mark.slow
@pytest.mark.timeout(1200)  # pip installs TensorFlow into a new venv: minutes beside other tests
def test_an_upgrade_over_the_previous_release_keeps_posts_models_jobs_history_and_password(
    tmp_path: Path,
) -> None:
    assert SCHEMA_VERSION > PREVIOUS_RELEASE_SCHEMA or len(MIGRATIONS) == SCHEMA_VERSION
    root = tmp_path / "root"
    data = root / "var/lib/instafly"
    before = previous_release_store(data)
    etc = root / "etc/instafly"
    etc.mkdir(parents=True)
    config_text = "data_dir: /var/lib/instafly\nweb:\n  port: 9999\n"
    (etc / "instafly.yaml").write_text(config_text)
    (etc / "share-password").write_text("share secret\n")

    result = subprocess.run(
        [str(INSTALL), "--system", "--root", str(root)],
        capture_output=True, text=True, timeout=1100, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    # The code: exactly the tested versions for this Python.
    venv = root / "opt/instafly/venv"
    python = subprocess.run(
        [venv / "bin/python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert f"Using the tested versions in requirements/lock-py{python}.txt" in result.stdout
    got, want = installed(venv), locked(python)
    assert {name: got.get(name) for name in want} == want
    # The store: migrated to the current schema, with a copy of the old one kept.
    changed = SCHEMA_VERSION != PREVIOUS_RELEASE_SCHEMA
    if changed:
        assert (
            f"Store migrated from schema v{PREVIOUS_RELEASE_SCHEMA} to v{SCHEMA_VERSION}"
            in result.stdout
        )
        kept = data / "instafly.db.before-upgrade"
        assert schema_version_of(kept) == PREVIOUS_RELEASE_SCHEMA
    assert schema_version_of(data / "instafly.db") == SCHEMA_VERSION
    # Nothing lost.
    config = build_config({"watch": {"drop_dir": "d", "output_dir": "o"}}, data_dir=data)
    with Database(config.db_path) as db:
        counts = store_counts(db.conn)
        assert (counts.posts, counts.accounts, counts.images, counts.labelled) == (
            POSTS, 4, POSTS, POSTS,
        )  # fmt: skip
        current = current_model_version(db.conn)
        assert current is not None and (current.version, current.path) == (1, "models/v0001")
        assert counts.training_runs == 1
        jobs = {(job.input_path, job.state, job.score_after) for job in recent_jobs(db.conn, 10)}
        assert jobs == {
            ("/srv/instafly/drop/p0.jpg", "done", 0.3),
            ("/srv/instafly/drop/p1.jpg", "failed", None),
            ("/srv/instafly/drop/p2.jpg", "queued", None),
        }
        days = history_rows(db.conn, 86_400, time.time() - 400 * DAY)
        assert len(days) == 365 and days[0].sample.flows == 1364
    for name, body in before["images"].items():  # type: ignore[attr-defined]
        assert (data / name).read_bytes() == body
    assert (data / "models/v0001/head.weights.h5").read_bytes() == b"the trained head" * 50
    # The password, the config and the share's password: untouched.
    assert (data / PASSWORD_FILE).read_text() == before["password_file"]
    hashed = read_password_hash(data)
    assert hashed is not None and hashed.matches(PASSWORD)
    assert "Password:        set already" in result.stdout
    assert (etc / "instafly.yaml").read_text() == config_text
    assert yaml.safe_load(config_text)["web"]["port"] == 9999
    assert (etc / "share-password").read_text() == "share secret\n"

    # The installed code reads the upgraded store.
    stats = subprocess.run(
        [venv / "bin/instaflyd", "--config", etc / "instafly.yaml", "--data-dir", data,
         "stats", "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["capture"]["totals"]["posts"] == POSTS
