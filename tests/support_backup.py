"""An appliance that has been in use, for the backup and upgrade tests: posts with images, a
promoted and a rejected model version with files, training runs, jobs in several states, a
year of history, events, a page password, the proxy's CA files and a feature cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from support_model import add_generated_posts

from instaflyd.config import Config
from instaflyd.store import Database
from instaflyd.store.events import record_event
from instaflyd.store.history import HistorySample, record_sample
from instaflyd.store.jobs import claim_next_job, enqueue_job, finish_job
from instaflyd.store.versions import add_model_version, finish_training_run, start_training_run
from instaflyd.web.password import set_password

PASSWORD = "correct horse battery staple"
DAY = 86_400.0


@dataclass(frozen=True)
class Appliance:
    posts: int
    model_file: bytes  # the promoted version's weights file
    ca_key: bytes


def fill_appliance(config: Config, posts: int = 24) -> Appliance:
    add_generated_posts(config, posts, side=32)
    models = config.models_dir
    (models / "v0001").mkdir(parents=True)
    model_file = b"promoted model weights " * 100
    (models / "v0001" / "model.weights.h5").write_bytes(model_file)
    (models / "v0001" / "version.json").write_text('{"version": 1}')
    (models / "v0002").mkdir()
    (models / "v0002" / "model.weights.h5").write_bytes(b"rejected model " * 100)
    (config.features_dir / "ab").mkdir(parents=True)
    (config.features_dir / "ab" / "abcd.npy").write_bytes(b"cached features")
    now = time.time()
    with Database(config.db_path) as db:
        with db.transaction() as conn:
            run = start_training_run(conn, pid=1, epochs=3)
            add_model_version(
                conn, 1, "models/v0001", posts, posts, {"val_srcc": 0.5}, promoted=True
            )
            finish_training_run(conn, run, "done", version=1, message="promoted")
            add_model_version(
                conn, 2, "models/v0002", posts, posts, {"val_srcc": 0.1}, promoted=False
            )
            for n in range(4):
                enqueue_job(conn, f"/drop/photo{n}.jpg", f"{n:064x}", now=now - 100 + n)
            for state in ("done", "failed"):
                job = claim_next_job(conn, worker_pid=1)
                assert job is not None
                finish_job(conn, job.id, state, reason=None if state == "done" else "broken file",
                           score_before=0.1, score_after=0.4, model_version=1)  # fmt: skip
            for day in range(365):
                record_sample(
                    conn,
                    HistorySample(now - day * DAY, posts, posts, posts + 10, 1000 - day, 1, 0.3),
                )
        record_event(db, "trainer", "info", "training_done", "a run")
    set_password(config.data_dir, PASSWORD)
    ca = config.mitmproxy_dir
    ca.mkdir(mode=0o700)
    ca_key = b"-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n"
    (ca / "mitmproxy-ca.pem").write_bytes(ca_key)
    (ca / "mitmproxy-ca.pem").chmod(0o600)
    (ca / "mitmproxy-ca-cert.pem").write_bytes(b"certificate")
    return Appliance(posts=posts, model_file=model_file, ca_key=ca_key)


def data_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative path (for comparing two data folders)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
