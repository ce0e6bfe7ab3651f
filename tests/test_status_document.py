"""The status document built in one place: the daemon's snapshots and the systemd STATUS line.

What the page, /api/status and /metrics show of it is in test_web_api.py; `stats --json` in
test_cli.py. Here: the emitter that builds the daemon's snapshots, and the readers that are not
web pages.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from support_daemon import seed_store

from instaflyd.config import Config, build_config
from instaflyd.daemon.run import status_line
from instaflyd.status.collect import collect_status
from instaflyd.status.document import ComponentStatus, StatusDocument, TrainerStatus
from instaflyd.status.emitter import StatusEmitter
from instaflyd.store import Database
from instaflyd.store.events import add_to_counter
from instaflyd.store.versions import record_training_progress, start_training_run


def config_for(data_dir: Path) -> Config:
    return build_config({"model": {"input_size": 64, "weights": "none"}}, data_dir=data_dir)


def test_the_emitter_keeps_the_latest_snapshot_and_refreshes_on_request(tmp_path: Path) -> None:
    config = config_for(tmp_path / "data")
    seed_store(config.data_dir, posts=4, owners=2)
    emitter = StatusEmitter(config, None, every=3600)  # only the first build and refresh()
    assert emitter.latest() is None
    emitter.start()
    try:
        first = emitter.refresh()
        assert isinstance(first, StatusDocument)
        assert (first.capture.totals.posts, first.capture.totals.flows) == (4, 0)
        with Database(config.db_path) as db, db.transaction() as conn:
            add_to_counter(conn, "flows", 7)
        assert emitter.latest() is first  # a snapshot: the store is not asked per read
        for _ in range(4):
            latest = emitter.refresh()
        assert latest is not first and latest.capture.totals.flows == 7
        assert emitter.latest() is latest  # the newest build, and only it, is kept
    finally:
        emitter.stop()
    assert not any(t.name == "status-emitter" for t in threading.enumerate())


def test_the_systemd_status_line_reads_the_document(tmp_path: Path) -> None:
    config = config_for(tmp_path / "data")
    seed_store(config.data_dir, posts=5, owners=2)
    with Database(config.db_path) as db:
        with db.transaction() as conn:
            run = start_training_run(conn, pid=1, epochs=8)  # pid 1 is alive: training runs
            record_training_progress(conn, run, epoch=3, loss=0.5)
        document = collect_status(config, db.conn)
    proxy = ComponentStatus("running", 10, 0, None, None, None, None, None)
    worker = ComponentStatus("backoff", None, 2, None, 1, None, "boom", 4.0)
    trainer = TrainerStatus("idle", None, 0, 0, None, None, None, "waiting", 30.0)
    document = dataclasses.replace(
        document, components={"proxy": proxy, "worker": worker, "trainer": trainer}
    )
    assert status_line(document) == (
        f"proxy on :{config.proxy.listen_port} (regular); worker backoff; "
        "5 posts, 5 labelled; no model yet; training epoch 3/8"
    )
    as_json = document.as_dict()
    assert as_json["components"]["worker"]["last_error"] == "boom"
    assert as_json["model"]["next_training"] == document.model.next_training.as_dict()
