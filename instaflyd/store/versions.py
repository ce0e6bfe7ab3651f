"""Trained model versions and training runs as the database records them.

The files of a version live in models/vNNNN/ (see instaflyd.model); this module only keeps the
rows. The current model is the newest promoted version.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Literal

from instaflyd.processes import claim_alive
from instaflyd.store.rows import record

PassKind = Literal["full", "incremental"]


@dataclass(frozen=True)
class ModelVersion:
    """One trained model version (its files are in models/vNNNN/)."""

    version: int
    created: float
    path: str  # models/vNNNN
    samples: int  # labelled posts used (train + validation)
    labelled_total: int  # labelled posts in the store at training time
    metrics: dict[str, Any]
    val_srcc: float | None
    val_pairwise_accuracy: float | None
    promoted: bool
    promoted_at: float | None
    pass_kind: PassKind  # full: trained on every post; incremental: new posts and a replay
    compared_version: int | None  # the version it was compared with before promotion...
    compared_val_srcc: float | None  # ...and that version's Spearman on the same posts

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ModelVersion:
        return record(cls, row, metrics=json.loads(row["metrics"]), promoted=bool(row["promoted"]))


@dataclass(frozen=True)
class TrainingRun:
    """One training run and its progress, as its row was when read."""

    id: int
    started: float
    finished: float | None
    heartbeat: float | None
    state: str  # running | done | failed
    pid: int | None
    epoch: int
    epochs: int | None
    loss: float | None
    metrics: dict[str, Any] | None  # the latest validation metrics
    version: int | None  # the version it wrote
    message: str | None
    cpu_seconds: float | None  # CPU time it used, once measured (at its end)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> TrainingRun:
        metrics = json.loads(row["metrics"]) if row["metrics"] else None
        return record(cls, row, metrics=metrics)


def add_model_version(
    conn: sqlite3.Connection,
    version: int,
    path: str,
    samples: int,
    labelled_total: int,
    metrics: dict[str, Any],
    *,
    promoted: bool,
    pass_kind: PassKind = "full",
    compared_version: int | None = None,
    compared_val_srcc: float | None = None,
    now: float | None = None,
) -> None:
    """Record a trained version. `metrics` is kept whole (JSON) for people and `train --json`;
    what is queried has columns: its validation figures, the pass that trained it and the
    version it was compared with."""
    now = time.time() if now is None else now
    conn.execute(
        "INSERT INTO model_versions (version, created, path, samples, labelled_total, metrics,"
        "   val_srcc, val_pairwise_accuracy, promoted, promoted_at, pass_kind, compared_version,"
        "   compared_val_srcc)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            version,
            now,
            path,
            samples,
            labelled_total,
            json.dumps(metrics),
            metrics.get("val_srcc"),
            metrics.get("val_pairwise_accuracy"),
            int(promoted),
            now if promoted else None,
            pass_kind,
            compared_version,
            compared_val_srcc,
        ),
    )


def current_model_version(conn: sqlite3.Connection) -> ModelVersion | None:
    """The newest promoted version, or None before the first model."""
    row = conn.execute(
        "SELECT * FROM model_versions WHERE promoted = 1 ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return None if row is None else ModelVersion.from_row(row)


def promoted_version_numbers(conn: sqlite3.Connection) -> list[int]:
    """The promoted versions, newest (the current one) first: what to fall back on."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT version FROM model_versions WHERE promoted = 1 ORDER BY version DESC"
        )
    ]


def model_version_numbers(conn: sqlite3.Connection) -> list[int]:
    """Every recorded version number, newest first."""
    return [row[0] for row in conn.execute("SELECT version FROM model_versions ORDER BY 1 DESC")]


def next_model_version(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions").fetchone()[0]
    )


def start_training_run(
    conn: sqlite3.Connection, pid: int, epochs: int, now: float | None = None
) -> int:
    now = time.time() if now is None else now
    cursor = conn.execute(
        "INSERT INTO training_runs (started, heartbeat, state, pid, epochs)"
        " VALUES (?, ?, 'running', ?, ?)",
        (now, now, pid, epochs),
    )
    assert cursor.lastrowid is not None  # an INSERT that succeeded has one
    return cursor.lastrowid


def record_training_progress(
    conn: sqlite3.Connection,
    run_id: int,
    epoch: int,
    loss: float | None,
    metrics: dict[str, Any] | None = None,
    now: float | None = None,
) -> None:
    now = time.time() if now is None else now
    conn.execute(
        "UPDATE training_runs SET epoch = ?, loss = ?, metrics = COALESCE(?, metrics),"
        "   heartbeat = ? WHERE id = ?",
        (epoch, loss, json.dumps(metrics) if metrics is not None else None, now, run_id),
    )


def finish_training_run(
    conn: sqlite3.Connection,
    run_id: int,
    state: str,
    *,
    version: int | None = None,
    message: str | None = None,
    now: float | None = None,
) -> None:
    now = time.time() if now is None else now
    conn.execute(
        "UPDATE training_runs SET state = ?, version = ?, message = ?, finished = ?, heartbeat = ?"
        " WHERE id = ?",
        (state, version, message, now, now, run_id),
    )


def record_training_cpu(
    conn: sqlite3.Connection, seconds: float, *, run_id: int | None = None, pid: int | None = None
) -> None:
    """The CPU time a run used: by the run's id (the trainer's own measure), or on the newest
    run of trainer process `pid` (its parent's measure, which also covers a killed trainer and
    its start-up); the larger figure is kept."""
    where, key = ("id = ?", run_id) if run_id is not None else ("pid = ?", pid)
    conn.execute(
        "UPDATE training_runs SET cpu_seconds = MAX(COALESCE(cpu_seconds, 0), ?)"
        f" WHERE id = (SELECT MAX(id) FROM training_runs WHERE {where})",
        (seconds, key),
    )


def training_cpu_since(conn: sqlite3.Connection, since: float) -> list[tuple[float, float]]:
    """(when, CPU seconds) of the runs that ended (or were last heard of) at or after `since`,
    oldest first: what the daily training budget counts."""
    rows = conn.execute(
        "SELECT COALESCE(finished, heartbeat, started) AS at, cpu_seconds FROM training_runs"
        " WHERE cpu_seconds IS NOT NULL AND COALESCE(finished, heartbeat, started) >= ?"
        " ORDER BY at",
        (since,),
    )
    return [(row["at"], row["cpu_seconds"]) for row in rows]


def latest_model_version(conn: sqlite3.Connection) -> ModelVersion | None:
    """The newest version written, promoted or not: the last training run that finished."""
    row = conn.execute("SELECT * FROM model_versions ORDER BY version DESC LIMIT 1").fetchone()
    return None if row is None else ModelVersion.from_row(row)


def not_promoted_streak(conn: sqlite3.Connection) -> int:
    """How many of the newest versions in a row were not promoted (0 when the newest was)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM model_versions"
        " WHERE version > COALESCE((SELECT MAX(version) FROM model_versions WHERE promoted = 1), 0)"
    ).fetchone()
    return int(row[0])


def latest_training_run(conn: sqlite3.Connection) -> TrainingRun | None:
    row = conn.execute("SELECT * FROM training_runs ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else TrainingRun.from_row(row)


def running_training_runs(conn: sqlite3.Connection) -> list[TrainingRun]:
    """Runs marked running: being trained, or left so by a trainer that was killed."""
    rows = conn.execute("SELECT * FROM training_runs WHERE state = 'running' ORDER BY id")
    return [TrainingRun.from_row(row) for row in rows]


def in_progress(run: TrainingRun | None) -> bool:
    """Whether `run` is being trained now: a killed trainer leaves its run "running", so only
    one whose process is still alive counts."""
    return run is not None and run.state == "running" and claim_alive(run.pid, run.started)


@dataclass(frozen=True)
class TrainingOutcome:
    """How the last finished training run ended, for the status page."""

    state: str  # done | failed
    started: float
    finished: float
    seconds: float
    version: int | None  # the version it wrote (None when it failed)
    promoted: bool
    val_srcc: float | None  # the new model's validation Spearman...
    current_version: int | None  # ...and the model it was compared with, on the same posts
    current_val_srcc: float | None
    message: str | None


def last_training_outcome(conn: sqlite3.Connection) -> TrainingOutcome | None:
    """The newest run that finished (done or failed), joined with the version it wrote."""
    row = conn.execute(
        "SELECT r.state, r.started, r.finished, r.version, r.message, v.promoted, v.val_srcc,"
        "       v.compared_version, v.compared_val_srcc"
        " FROM training_runs AS r LEFT JOIN model_versions AS v ON v.version = r.version"
        " WHERE r.finished IS NOT NULL ORDER BY r.id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return TrainingOutcome(
        state=row["state"],
        started=row["started"],
        finished=row["finished"],
        seconds=round(row["finished"] - row["started"], 1),
        version=row["version"],
        promoted=bool(row["promoted"]),
        val_srcc=row["val_srcc"],
        current_version=row["compared_version"],
        current_val_srcc=row["compared_val_srcc"],
        message=row["message"],
    )


def runs_since_full_pass(conn: sqlite3.Connection) -> int | None:
    """How many versions were trained since the newest one trained on every post (a full
    pass); None before the first version. Versions from before incremental runs count as full."""
    count = 0
    for row in conn.execute("SELECT pass_kind FROM model_versions ORDER BY version DESC"):
        if row["pass_kind"] == "full":
            return count
        count += 1
    return count if count else None


@dataclass(frozen=True)
class VersionMetrics:
    """One trained version's validation figures, promoted or not (kept forever: they are few)."""

    version: int
    created: float
    samples: int
    val_srcc: float | None
    val_pairwise_accuracy: float | None
    promoted: bool


def version_metrics(conn: sqlite3.Connection) -> list[VersionMetrics]:
    """Every trained version, oldest first (by the primary key)."""
    rows = conn.execute(
        "SELECT version, created, samples, val_srcc, val_pairwise_accuracy, promoted"
        " FROM model_versions ORDER BY version"
    ).fetchall()
    return [record(VersionMetrics, row, promoted=bool(row["promoted"])) for row in rows]
