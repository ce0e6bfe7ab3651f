"""Everything the status page shows, as one JSON-ready document (also served as /api/status).

The page's template and `/api/status` are both rendered from `collect_status`, so the page and
the API can never disagree. Reads only: the store, the config and the daemon's own state.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from instaflyd import __version__
from instaflyd.capture.ca_files import ca_fingerprint
from instaflyd.config import Config
from instaflyd.status.training import TrainingStatus, training_status
from instaflyd.status.weights import weights_status
from instaflyd.store.events import counters, recent_events
from instaflyd.store.posts import accounts_to_visit
from instaflyd.store.stats import collect_stats
from instaflyd.store.tls import tls_failures
from instaflyd.store.versions import last_training_outcome
from instaflyd.web.network import is_loopback, lan_address

TLS_NOTE = (
    "The Instagram app pins its certificates: it refuses any proxy, so its connections fail "
    "here and nothing is captured from it. Open instagram.com in the phone's browser instead; "
    "that works and is captured."
)
RETRYABLE_STATES = ("failed", "rejected")
ACCOUNTS_TO_VISIT = 5


@dataclass(frozen=True)
class TrainingGoal:
    """How far the store is from the next training: "43 of 50 labelled posts, from 3 of 4
    accounts" before the first model; new labelled posts after it."""

    first_model: bool
    posts: int
    posts_goal: int
    owners: int
    owners_goal: int
    text: str


def training_goal(config: Config, upcoming: TrainingStatus) -> TrainingGoal:
    train = config.train
    first = upcoming.current_version is None
    goal = train.min_labelled_posts if first else train.min_new_posts
    posts = upcoming.labelled if first else upcoming.new_since_current
    what = "labelled posts" if first else "new labelled posts"
    text = f"{posts:,} of {goal:,} {what}" if posts < goal else f"{posts:,} {what}"
    if first:
        owners = upcoming.owners
        text += (
            f", from {owners:,} of {train.min_owners:,} accounts"
            if owners < train.min_owners
            else f", from {owners:,} accounts"
        )
    return TrainingGoal(first, posts, goal, upcoming.owners, train.min_owners, text)


class DaemonView(Protocol):
    """What the page needs from the running daemon (absent when the app runs on its own)."""

    @property
    def state(self) -> str: ...  # starting | running | stopping

    def components(self) -> dict[str, dict[str, Any]]: ...

    def heartbeat_age(self) -> float: ...  # seconds since the supervisor's loop last ran

    def request_training(self) -> tuple[bool, str]: ...


def collect_status(
    config: Config,
    conn: sqlite3.Connection,
    daemon: DaemonView | None,
    request_host: str | None = None,
) -> dict[str, Any]:
    stats = collect_stats(conn)
    return {
        "instafly": {
            "version": __version__,
            "state": daemon.state if daemon else "standalone",
            "time": time.time(),
            "data_dir": str(config.data_dir),
        },
        "components": daemon.components() if daemon else {},
        "capture": capture_section(config, conn, stats),
        "model": model_section(config, conn, stats),
        "drop_folder": drop_folder_section(config, conn, stats),
        "setup": setup_section(config, request_host),
    }


def capture_section(
    config: Config, conn: sqlite3.Connection, stats: dict[str, Any]
) -> dict[str, Any]:
    counts = counters(conn)
    return {
        "proxy": {
            "mode": config.proxy.mode,
            "listen_host": config.proxy.listen_host,
            "listen_port": config.proxy.listen_port,
            "address": f"{lan_address(config.proxy.listen_host)}:{config.proxy.listen_port}",
        },
        "totals": {
            "flows": counts.get("flows", 0),
            "posts": stats["posts"],
            "accounts": stats["accounts"],
            "images": stats["images"],
            "labelled": stats["labelled"],
        },
        "counters": counts,
        "last_capture": conn.execute("SELECT MAX(last_seen) FROM posts").fetchone()[0],
        "tls_failures": [
            {key: row[key] for key in ("host", "count", "last_seen", "last_error")}
            for row in tls_failures(conn, limit=20)
        ],
        "tls_note": TLS_NOTE,
        "accounts_to_visit": [asdict(a) for a in accounts_to_visit(conn, ACCOUNTS_TO_VISIT)],
        "recent_errors": [
            {key: row[key] for key in ("ts", "component", "level", "kind", "message")}
            for row in recent_events(conn, limit=10, min_level="warning")
        ],
        "recent_posts": [
            {
                "id": row["id"],
                "username": row["username"],
                "like_count": row["like_count"],
                "follower_count": row["follower_count"],
                "like_rate": row["like_rate"],
                "image": f"/images/{row['image_sha256']}",
            }
            for row in conn.execute(
                "SELECT l.id, a.username, l.like_count, l.follower_count, l.like_rate,"
                "       l.image_sha256"
                " FROM labelled_posts AS l JOIN accounts AS a ON a.id = l.owner_id"
                " ORDER BY l.first_seen DESC, l.id DESC LIMIT 6"
            )
        ],
    }


def model_section(
    config: Config, conn: sqlite3.Connection, stats: dict[str, Any]
) -> dict[str, Any]:
    model = dict(stats["model"])
    run = model.pop("last_run")
    running = bool(model.pop("training"))
    model["training"] = {
        "running": running,
        "epoch": run["epoch"] if run else None,
        "epochs": run["epochs"] if run else None,
        "progress": _progress(run) if running else None,
        "loss": run["loss"] if run else None,
        "started": run["started"] if run else None,
    }
    model["last_run"] = (
        {
            "state": run["state"],
            "finished": run["finished"],
            "version": run["version"],
            "message": run["message"],
            "metrics": json.loads(run["metrics"]) if run["metrics"] else None,
        }
        if run
        else None
    )
    upcoming = training_status(config, conn)
    model["next_training"] = upcoming.as_dict()
    model["goal"] = asdict(training_goal(config, upcoming))
    outcome = last_training_outcome(conn)
    model["last_outcome"] = asdict(outcome) if outcome else None
    model["weights"] = weights_status(config).as_dict()
    model["input_size"] = config.model.input_size
    return model


def drop_folder_section(
    config: Config, conn: sqlite3.Connection, stats: dict[str, Any]
) -> dict[str, Any]:
    recent = []
    for row in conn.execute(
        "SELECT * FROM jobs ORDER BY COALESCE(finished, updated) DESC, id DESC LIMIT 8"
    ):
        before, after = row["score_before"], row["score_after"]
        recent.append(
            {
                "id": row["id"],
                "name": Path(row["input_path"]).name,
                "state": row["state"],
                "reason": row["reason"],
                "attempts": row["attempts"],
                "finished": row["finished"],
                "score_before": before,
                "score_after": after,
                "score_change": after - before
                if before is not None and after is not None
                else None,
                "model_version": row["model_version"],
                "before": _thumbnail_url(row, "before", row["input_path"]),
                "after": _thumbnail_url(row, "after", row["output_path"]),
                "retryable": row["state"] in RETRYABLE_STATES,
            }
        )
    return {
        "drop_dir": str(config.watch.drop_dir),
        "output_dir": str(config.watch.output_dir),
        "jobs": stats["jobs"],
        "recent": recent,
    }


def setup_section(config: Config, request_host: str | None = None) -> dict[str, Any]:
    """Where phones point their proxy, and the CA certificate they must trust."""
    address = lan_address(config.proxy.listen_host)
    web_host = request_host or f"{lan_address(config.web.host)}:{config.web.port}"
    if is_loopback(web_host.rsplit(":", 1)[0]):
        web_host = f"{lan_address()}:{config.web.port}"
    fingerprint = ca_fingerprint(config.mitmproxy_dir)
    warnings = []
    if is_loopback(address):
        warnings.append(
            f"The proxy listens only on {address}, which phones cannot reach; set "
            "proxy.listen_host: 0.0.0.0 in the config."
        )
    if is_loopback(config.web.host):
        warnings.append(
            f"This page listens only on {config.web.host}, which phones cannot reach, so the QR "
            "code and link below will not open on a phone; set web.host: 0.0.0.0 in the config."
        )
    return {
        "lan_address": address,
        "proxy_port": config.proxy.listen_port,
        "proxy_mode": config.proxy.mode,
        "setup_url": f"http://{web_host}/setup",
        "ca": {
            "available": fingerprint is not None,
            "pem": "/ca/instafly-ca.pem",
            "cer": "/ca/instafly-ca.cer",
            "sha256": fingerprint,
        },
        "warnings": warnings,
    }


def _thumbnail_url(job: sqlite3.Row, which: str, path: str | None) -> str | None:
    """A preview only where there is a file to show (a rejected input may not be an image)."""
    if not path or job["state"] == "rejected" or not Path(path).is_file():
        return None
    return f"/thumbs/job/{job['id']}/{which}"


def _progress(run: dict[str, Any]) -> float:
    if not run.get("epochs"):
        return 0.0
    return max(0.0, min(1.0, (run["epoch"] or 0) / run["epochs"]))
