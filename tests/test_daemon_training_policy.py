"""The real scheduler with a real `instaflyd train --scheduled` child (tiny model): the next
check counts from the run's end, the trainer's CPU time is measured by the kernel and recorded
for the daily budget, the result is logged once, and a model that was not better backs off."""

from __future__ import annotations

from pathlib import Path

import pytest

from instaflyd.config import load_config
from instaflyd.daemon.children import stop_all
from instaflyd.daemon.event_writer import EventWriter
from instaflyd.daemon.scheduler import TrainingScheduler
from instaflyd.store import Database
from instaflyd.store.versions import add_model_version, latest_training_run
from tests.helpers import wait_until, write_config
from tests.support_model import TINY_MODEL, add_generated_posts

pytestmark = pytest.mark.slow

INTERVAL = 30.0


@pytest.mark.parametrize("budget_hours", [2.0, 0.0005])
def test_a_real_run_is_measured_logged_once_and_scheduled_from_its_end(
    tmp_path: Path, budget_hours: float
) -> None:
    values = {section: dict(keys) for section, keys in TINY_MODEL.items()}
    values["data_dir"] = str(tmp_path / "data")
    values["train"] |= {
        "epochs": 2, "check_interval_seconds": INTERVAL, "cpu_budget_hours_per_day": budget_hours,
    }  # fmt: skip
    config = load_config(write_config(tmp_path / "instafly.yaml", values), search=False)
    add_generated_posts(config, 48)
    db = Database(config.db_path)
    events = EventWriter(config.db_path).start()
    scheduler = TrainingScheduler(config, db, events)
    try:
        scheduler.tick(now=1000.0)
        child = scheduler.child
        assert child is not None, scheduler.last_reason
        assert scheduler.last_reason == "training is due: 48 new labelled posts"
        wait_until(lambda: child.poll() is not None, 240, "the trainer to finish")
        scheduler.tick(now=5000.0)  # a long run: it ended at 5000
        assert (scheduler.child, scheduler.last_exit) == (None, 0)
        assert scheduler.next_check == 5000.0 + INTERVAL  # counted from the end, not the start

        results = [line for line in child.lines if "v1 promoted" in line]
        assert len(results) == 1, list(child.lines)  # one line per result
        assert "INFO instafly.cli: v1 promoted: 48 posts" in results[0]

        assert scheduler.cpu_writer is not None
        scheduler.cpu_writer.join(10)
        run = latest_training_run(db.conn)
        assert child.cpu_seconds is not None and child.cpu_seconds > 1.0  # TensorFlow's import
        assert run.cpu_seconds == pytest.approx(child.cpu_seconds, abs=0.01)

        add_generated_posts(config, 10, start=48)  # min_new_posts: due again...
        scheduler.tick(now=5000.0 + INTERVAL - 1)  # ...but not checked before the interval
        assert scheduler.child is None
        assert scheduler.last_reason == "training is due: 48 new labelled posts"  # unchanged
        if budget_hours < 1:  # 1.8 CPU seconds a day: the one run used it up
            scheduler.tick(now=5000.0 + INTERVAL)
            assert scheduler.child is None
            assert scheduler.last_reason.startswith("the daily training budget is used up (")
            assert scheduler.last_reason.endswith("next try in 24 h")
            return
        # a run whose model was not better: the 10 posts no longer make training due
        with db.transaction() as conn:
            add_model_version(conn, 2, "models/v0002", 58, 58, {}, promoted=False)
        scheduler.tick(now=5000.0 + INTERVAL)
        assert scheduler.child is None
        assert scheduler.last_reason == (
            "the last model was not better than v1; next try when 20 new labelled posts have"
            " arrived (0 so far) or in 60 min once there are 10"
        )
    finally:
        leftover = scheduler.stop()
        if leftover:
            stop_all([leftover], 5)
        events.stop()
        db.close()
