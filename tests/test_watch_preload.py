"""An upload announced by the page starts the enhancer before the photo arrives: a real worker
process, a real enhancer loading the session's tiny trained model and compiling its gradient
step, no job queued yet."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers import jpeg_bytes
from test_watch_worker import (
    WorkerProcess,
    job_in_state,
    start_worker,  # noqa: F401  (fixture)
    wait_for,
    with_model,
    worker_config,
)

pytestmark = pytest.mark.slow


def test_an_announced_upload_loads_the_model_before_the_photo_arrives(
    tmp_path: Path,
    trained_data_dir: Path,
    start_worker,  # noqa: F811  (the fixture imported above)
) -> None:
    data_dir = with_model(trained_data_dir, tmp_path / "data")
    wanted = data_dir / "enhancer.wanted"
    wanted.touch()
    os.utime(wanted, (time.time() - 600, time.time() - 600))  # announced long ago: nothing
    worker: WorkerProcess = start_worker(worker_config(tmp_path, data_dir))
    wait_for("the worker's start", lambda: "worker started" in worker.output(), worker)
    time.sleep(2)
    assert "enhancer started" not in worker.output()

    wanted.touch()
    os.utime(wanted)  # what POST /api/photos/coming does
    wait_for("the model loaded", lambda: "model version 1 loaded" in worker.output(), worker)
    assert "enhancer started" in worker.output()
    # and, with nothing queued yet, its gradient step compiled before the photo comes
    wait_for("the warm-up", lambda: "gradient step compiled in" in worker.output(), worker)
    (data_dir / "drop" / "coming.jpg").write_bytes(jpeg_bytes(96, 64, seed=5))
    done = wait_for("the photo", job_in_state(data_dir, "coming.jpg", "done"), worker)
    assert done["model_version"] == 1
    assert worker.output().count("enhancer started") == 1  # the preloaded one did the job
    assert worker.terminate() == 0, worker.output()
