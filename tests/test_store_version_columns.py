"""What is asked of a model version has columns (migration v8): the pass that trained it and the
version it was compared with; earlier rows get them from their metrics JSON."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from instaflyd.store import Database
from instaflyd.store.migrations import MIGRATIONS, migrate
from instaflyd.store.versions import (
    add_model_version,
    current_model_version,
    finish_training_run,
    last_training_outcome,
    runs_since_full_pass,
    start_training_run,
)

V8 = MIGRATIONS.index(next(m for m in MIGRATIONS if "pass_kind" in m)) + 1


def test_earlier_versions_get_their_columns_from_the_json(tmp_path: Path) -> None:
    path = tmp_path / "instafly.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=V8 - 1)
    rows = [
        (1, {"val_srcc": 0.2}),  # from before incremental runs: counts as full
        (2, {"val_srcc": 0.3, "pass": "full", "current_version": 1, "current_val_srcc": 0.2}),
        (
            3,
            {
                "val_srcc": 0.25,
                "pass": "incremental",
                "current_version": 2,
                "current_val_srcc": 0.3,
            },
        ),
        (
            4,
            {
                "val_srcc": 0.4,
                "pass": "incremental",
                "current_version": 2,
                "current_val_srcc": 0.31,
            },
        ),
    ]
    for version, metrics in rows:
        conn.execute(
            "INSERT INTO model_versions (version, created, path, samples, labelled_total, metrics,"
            " val_srcc, promoted) VALUES (?, ?, ?, 10, 10, ?, ?, 1)",
            (
                version,
                float(version),
                f"models/v{version:04d}",
                json.dumps(metrics),
                metrics["val_srcc"],
            ),
        )
    conn.close()
    with Database(path) as db:
        assert runs_since_full_pass(db.conn) == 2
        current = current_model_version(db.conn)
        assert current is not None
        assert (current.version, current.pass_kind, current.compared_version) == (
            4,
            "incremental",
            2,
        )
        assert current.compared_val_srcc == 0.31
        assert current.metrics["pass"] == "incremental"  # the JSON is kept whole


def test_a_new_version_is_recorded_with_its_columns_and_the_outcome_reads_them(
    tmp_path: Path,
) -> None:
    with Database(tmp_path / "instafly.db") as db:
        assert runs_since_full_pass(db.conn) is None
        with db.transaction() as conn:
            add_model_version(conn, 1, "models/v0001", 40, 40, {"val_srcc": 0.5}, promoted=True)
            run = start_training_run(conn, pid=1, epochs=3, now=100.0)
            add_model_version(
                conn, 2, "models/v0002", 50, 50, {"val_srcc": 0.4}, promoted=False,
                pass_kind="incremental", compared_version=1, compared_val_srcc=0.45,
            )  # fmt: skip
            finish_training_run(conn, run, "done", version=2, message="not promoted", now=160.0)
        assert runs_since_full_pass(db.conn) == 1
        outcome = last_training_outcome(db.conn)
        assert outcome is not None
        assert (outcome.version, outcome.promoted, outcome.val_srcc) == (2, False, 0.4)
        assert (outcome.current_version, outcome.current_val_srcc, outcome.seconds) == (
            1,
            0.45,
            60.0,
        )
