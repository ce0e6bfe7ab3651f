"""Read-only summaries of the store, for `instaflyd stats`, the status page and the scheduler."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from instaflyd.store.jobs import jobs_by_state
from instaflyd.store.versions import current_model_version, in_progress, latest_training_run


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def labelled_count(conn: sqlite3.Connection) -> int:
    """Rows of the `labelled_posts` view, from the per-owner counts triggers keep (migration v5):
    counting the view itself joins every post, hundreds of milliseconds on a big store."""
    return int(conn.execute("SELECT COALESCE(SUM(labelled), 0) FROM owner_labels").fetchone()[0])


def labelled_owner_count(conn: sqlite3.Connection) -> int:
    """Distinct owners in the `labelled_posts` view (kept like `labelled_count`)."""
    return int(conn.execute("SELECT COUNT(*) FROM owner_labels WHERE labelled > 0").fetchone()[0])


def model_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """The current model and the latest training run, as plain JSON-ready values."""
    current = current_model_version(conn)
    run = latest_training_run(conn)
    return {
        "version": current["version"] if current else None,
        "trained_at": current["created"] if current else None,
        "samples": current["samples"] if current else 0,
        "val_srcc": current["val_srcc"] if current else None,
        "val_pairwise_accuracy": current["val_pairwise_accuracy"] if current else None,
        "metrics": json.loads(current["metrics"]) if current else {},
        "training": in_progress(run),
        "last_run": dict(run) if run else None,
    }


def collect_stats(conn: sqlite3.Connection) -> dict[str, Any]:
    """The counts of DESIGN.md's `stats --json`: posts, accounts, images, labelled, model, jobs."""
    return {
        "posts": count(conn, "posts"),
        "accounts": count(conn, "accounts"),
        "images": count(conn, "images"),
        "labelled": labelled_count(conn),
        "model": model_summary(conn),
        "jobs": jobs_by_state(conn),
    }
