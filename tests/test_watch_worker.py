"""The drop folder end to end: a real `instaflyd worker` process, a real observer on a temp folder
and a tiny trained model. Photos go in; exactly one enhanced photo (or a rejection saying why)
comes out for each, whatever the input, across kills and restarts, with or without a model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from helpers import (
    REPO,
    cli_env,
    jpeg_bytes,
    missing_on_this_machine,
    photo,
    run_cli_json,
    wait_until,
    write_config,
)
from PIL import Image
from support_model import TINY_MODEL

pytestmark = pytest.mark.slow

SETTLE = 0.5
T = TypeVar("T")


# --- the session's trained model (conftest.trained_data_dir) -------------------------------


def with_model(trained: Path, data_dir: Path) -> Path:
    """`data_dir` as a copy of the trained one (store, model files)."""
    shutil.copytree(trained, data_dir, dirs_exist_ok=True)
    return data_dir


def promote_copy(trained: Path, data_dir: Path, version: int) -> None:
    """Promote the trained model in `data_dir` as `version`, the way training does."""
    source = sqlite3.connect(trained / "instafly.db")
    source.row_factory = sqlite3.Row
    row = dict(source.execute("SELECT * FROM model_versions WHERE version = 1").fetchone())
    source.close()
    target_dir = data_dir / "models" / f"v{version:04d}"
    shutil.copytree(trained / "models" / "v0001", target_dir)
    row.update(version=version, path=str(Path(row["path"]).with_name(target_dir.name)))
    target = sqlite3.connect(data_dir / "instafly.db", timeout=30, isolation_level=None)
    target.execute(
        f"INSERT INTO model_versions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        tuple(row.values()),
    )
    target.close()


# --- the worker process -----------------------------------------------------------------------


class WorkerProcess:
    """`instaflyd --config C worker` as a child process, its log in a file."""

    def __init__(self, config: Path, log: Path, wrapper: tuple[str, ...] = ()) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "instaflyd", "--config", str(config), "worker"],
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            env=cli_env(),
            cwd=REPO,
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self._wait(timeout)

    def kill(self) -> int:
        self.process.kill()
        return self._wait(10)

    def _wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self.handle.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Path], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(config: Path, wrapper: tuple[str, ...] = ()) -> WorkerProcess:
        worker = WorkerProcess(config, tmp_path / "worker.log", wrapper)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.running():
            worker.kill()


def worker_config(tmp_path: Path, data_dir: Path, **sections: dict[str, Any]) -> Path:
    values: dict[str, Any] = {
        "data_dir": str(data_dir),
        **{section: dict(keys) for section, keys in TINY_MODEL.items()},
        "watch": {"drop_dir": "drop", "output_dir": "enhanced", "settle_seconds": SETTLE},
        "enhance": {"steps": 4},
    }
    for section, keys in sections.items():
        values.setdefault(section, {}).update(keys)
    (data_dir / "drop").mkdir(parents=True, exist_ok=True)
    return write_config(tmp_path / "instafly.yaml", values)


def jobs(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every job by its input's file name."""
    path = data_dir / "instafly.db"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the worker has not created the schema yet
        rows = []
    finally:
        conn.close()
    return {Path(row["input_path"]).name: dict(row) for row in rows}


def wait_for(
    what: str, check: Callable[[], T | None], worker: WorkerProcess, timeout: float = 90
) -> T:
    """Wait for `check` while the worker runs; its log is in the message if either ends first."""
    return wait_until(check, timeout, what, process=worker.process, output=worker.output)


def jobs_ended(data_dir: Path, names: list[str]) -> Callable[[], dict[str, dict[str, Any]]]:
    def check() -> dict[str, dict[str, Any]]:
        found = jobs(data_dir)
        ended = all(found.get(n, {}).get("state") in ("done", "rejected") for n in names)
        return found if ended else {}

    return check


def job_in_state(data_dir: Path, name: str, state: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        job = jobs(data_dir).get(name)
        return job if job and job["state"] == state else None

    return check


# --- test images --------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header for a huge image, with a few bytes of data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def output_files(data_dir: Path) -> list[str]:
    """Every file in the output folder, hidden ones included."""
    root = data_dir / "enhanced"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def sidecar(data_dir: Path, stem: str) -> dict[str, Any]:
    return json.loads((data_dir / "enhanced" / f"{stem}.instafly.json").read_text())


# --- one worker for the tests that drop files and read what comes out --------------------------


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, trained_data_dir: Path
) -> Iterator[tuple[Path, WorkerProcess]]:
    tmp_path = tmp_path_factory.mktemp("running")
    data_dir = with_model(trained_data_dir, tmp_path / "data")
    worker = WorkerProcess(worker_config(tmp_path, data_dir), tmp_path / "worker.log")
    yield data_dir, worker
    if worker.running():
        assert worker.terminate() == 0, worker.output()


def test_every_dropped_photo_gives_exactly_one_output_of_its_size(
    running: tuple[Path, WorkerProcess],
) -> None:
    data_dir, worker = running
    drop = data_dir / "drop"
    (drop / "plain.jpg").write_bytes(jpeg_bytes(120, 80, seed=1))
    photo(90, 70, seed=2).save(drop / "screenshot.png")
    (drop / "twin of plain.jpg").write_bytes((drop / "plain.jpg").read_bytes())
    # Copied in under a temp name, then renamed into place.
    (drop / "download.jpg.crdownload").write_bytes(jpeg_bytes(64, 96, seed=3))
    (drop / "download.jpg.crdownload").rename(drop / "download.jpg")
    # Written slowly, in chunks, pausing longer than the settle time with the file open.
    slow = jpeg_bytes(100, 60, seed=4)
    with (drop / "slow.jpg").open("wb") as handle:
        for start in range(0, len(slow), len(slow) // 4 + 1):
            handle.write(slow[start : start + len(slow) // 4 + 1])
            handle.flush()
            time.sleep(2 * SETTLE)
    before = {path.name: sha256(path) for path in drop.iterdir()}

    names = ["plain.jpg", "screenshot.png", "download.jpg", "slow.jpg"]
    found = wait_for("four enhanced photos", jobs_ended(data_dir, names), worker)
    # A photo dropped now is queued after the twin would have been: once it is, the twin was not.
    (drop / "later.jpg").write_bytes(jpeg_bytes(40, 30, seed=16))
    before["later.jpg"] = sha256(drop / "later.jpg")
    wait_for("the later photo's job", lambda: "later.jpg" in jobs(data_dir), worker)
    assert sorted(jobs(data_dir)) == sorted([*names, "later.jpg"])
    assert {name: found[name]["state"] for name in names} == dict.fromkeys(names, "done")
    sizes = {"plain": (120, 80), "screenshot": (90, 70), "download": (64, 96), "slow": (100, 60)}
    for stem, size in sizes.items():
        with Image.open(data_dir / "enhanced" / f"{stem}.instafly.jpg") as enhanced:
            assert enhanced.size == size
        record = sidecar(data_dir, stem)
        assert (record["status"], record["model_version"]) == ("done", 1)
        assert isinstance(record["score_after"], float)
        assert found[f"{stem}.{'png' if stem == 'screenshot' else 'jpg'}"]["model_version"] == 1
    assert {path.name: sha256(path) for path in drop.iterdir()} == before  # originals untouched
    assert worker.running()


def test_odd_and_broken_inputs_end_done_or_rejected_with_the_reason(
    running: tuple[Path, WorkerProcess],
) -> None:
    data_dir, worker = running
    drop = data_dir / "drop"
    (drop / "empty.jpg").write_bytes(b"")
    whole = jpeg_bytes(200, 150, seed=5)
    (drop / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (drop / "notes.jpg").write_text("shopping list: eggs, milk\n")
    (drop / "bomb.png").write_bytes(png_header_only(40_000, 40_000))
    frames = [photo(50, 40, seed=s, mode="P") for s in (6, 7)]
    frames[0].save(drop / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    photo(64, 48, seed=8).save(drop / "pages.tif", save_all=True, append_images=[photo(32, 32)])
    photo(70, 50, seed=9, mode="CMYK").save(drop / "print.jpg", "JPEG")
    Image.fromarray((np.arange(60 * 40).reshape(40, 60) * 27).astype(np.uint16)).save(
        drop / "sixteen.png"
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    (drop / "rotated.jpg").write_bytes(jpeg_bytes(60, 40, seed=10, exif=exif.tobytes()))

    expected = {
        "empty.jpg": ("rejected", "not an image: the file is empty"),
        "truncated.jpg": ("rejected", "truncated image"),
        "notes.jpg": ("rejected", "not an image: the file is a text document"),
        "bomb.png": (
            "rejected",
            "image is 1,600,000,000 pixels (40,000 x 40,000), over the limit of 100,000,000",
        ),
        "animated.gif": ("done", (50, 40)),
        "pages.tif": ("done", (64, 48)),
        "print.jpg": ("done", (70, 50)),
        "sixteen.png": ("done", (60, 40)),
        "rotated.jpg": ("done", (40, 60)),
    }
    found = wait_for("every odd input", jobs_ended(data_dir, list(expected)), worker)
    for name, (state, detail) in expected.items():
        job, stem = found[name], Path(name).stem
        assert job["state"] == state, (name, job)
        record = sidecar(data_dir, stem)
        assert record["status"] == state
        if state == "rejected":
            assert job["reason"].startswith(detail), (name, job["reason"])
            assert record["reason"] == job["reason"]
            assert not (data_dir / "enhanced" / f"{stem}.instafly.jpg").exists()
        else:
            with Image.open(data_dir / "enhanced" / f"{stem}.instafly.jpg") as enhanced:
                assert (enhanced.size, enhanced.mode) == (detail, "RGB"), name
    assert worker.running()


def test_after_the_idle_timeout_no_process_of_the_run_tree_holds_tensorflow(
    tmp_path: Path, trained_data_dir: Path
) -> None:
    """TensorFlow lives only in the enhancer process, which ends when idle: its memory goes back
    to the system (a process that keeps running never returns it), and the next photo starts a
    new one."""
    from helpers import maps_library
    from support_daemon import daemon_config, running_daemon

    from instaflyd.processes import process_tree

    data_dir = with_model(trained_data_dir, tmp_path / "data")
    config, web_port, proxy_port = daemon_config(
        tmp_path, data_dir, watch={"idle_unload_seconds": 2}, enhance={"steps": 2}
    )
    (data_dir / "drop").mkdir()
    with running_daemon(config, data_dir, web_port, proxy_port) as daemon:

        def holding_tensorflow() -> list[int]:
            return [p for p in process_tree(daemon.process.pid) if maps_library(p, "tensorflow")]

        for name, seed in (("first.jpg", 21), ("after-idle.jpg", 22)):
            (data_dir / "drop" / name).write_bytes(jpeg_bytes(96, 64, seed=seed))
            done = wait_for_daemon(daemon, job_in_state(data_dir, name, "done"))
            assert done["model_version"] == 1
            assert len(holding_tensorflow()) == 1  # the enhancer, still loaded
            wait_for_daemon(daemon, lambda: "unloaded model version 1: idle for" in daemon.output())
            wait_for_daemon(daemon, lambda: not holding_tensorflow())
            assert len(process_tree(daemon.process.pid)) >= 3  # the daemon, proxy, worker...
            daemon.lines.clear()
        assert daemon.stop() == 0
    assert "cuInit" not in daemon.output() and "oneDNN" not in daemon.output()


def wait_for_daemon(daemon: Any, check: Callable[[], T | None], timeout: float = 90) -> T:
    return wait_until(
        check, timeout, "the daemon's worker", process=daemon.process, output=daemon.output
    )


def bound_by_file_modes() -> tuple[str, ...]:
    """A command prefix that makes a process obey file modes as any user does.

    The tests run as root, and root reads a mode-000 file anyway (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH). `setpriv` drops both from the bounding set, so the process started
    under it (and its children: the enhancer) keeps root's uid, and with it the temp folders it
    owns, but is refused a file whose mode says nobody may read it. Not root: nothing to drop.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        missing_on_this_machine("setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE")
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search")


def test_a_251_byte_name_and_an_unreadable_file_end_with_a_sidecar_saying_what_happened(
    tmp_path: Path, trained_data_dir: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    data_dir = with_model(trained_data_dir, tmp_path / "data")
    config = worker_config(tmp_path, data_dir, enhance={"steps": 2})
    drop, enhanced = data_dir / "drop", data_dir / "enhanced"
    long_names = ["p" * 247 + ".jpg", "p" * 246 + "q.jpg"]  # 251 bytes; alike when shortened
    for seed, name in enumerate(long_names):
        (drop / name).write_bytes(jpeg_bytes(64, 48, seed=30 + seed))
    locked = drop / "locked.jpg"
    locked.write_bytes(jpeg_bytes(64, 48, seed=32))
    locked.chmod(0)
    worker = start_worker(config, bound_by_file_modes())

    found = wait_for("the three jobs", jobs_ended(data_dir, [*long_names, "locked.jpg"]), worker)
    assert found["locked.jpg"]["state"] == "rejected"
    assert found["locked.jpg"]["reason"] == "cannot read the file (permission denied)"
    assert json.loads(Path(found["locked.jpg"]["sidecar_path"]).read_text()) == {
        "status": "rejected",
        "input": str(locked),
        "reason": "cannot read the file (permission denied)",
    }
    outputs = {found[name]["output_path"] for name in long_names}
    assert outputs == {
        str(enhanced / ("p" * 241 + ".instafly.jpg")),
        str(enhanced / ("p" * 239 + "-2.instafly.jpg")),
    }
    for name in long_names:
        assert (found[name]["state"], found[name]["attempts"]) == ("done", 1)
        record = json.loads(Path(found[name]["sidecar_path"]).read_text())
        assert (record["input"], record["output"]) == (str(drop / name), found[name]["output_path"])
    assert sorted(output_files(data_dir)) == sorted(
        ["locked.instafly.json"]
        + [Path(found[n][key]).name for n in long_names for key in ("output_path", "sidecar_path")]
    )
    assert worker.terminate() == 0


# --- crashes, restarts and the model ------------------------------------------------------------


def test_a_killed_worker_finishes_the_job_once_and_catches_up_on_what_arrived_meanwhile(
    tmp_path: Path, trained_data_dir: Path, start_worker: Callable[[Path], WorkerProcess]
) -> None:
    data_dir = with_model(trained_data_dir, tmp_path / "data")
    config = worker_config(tmp_path, data_dir, enhance={"steps": 20})
    drop, enhanced = data_dir / "drop", data_dir / "enhanced"
    (drop / "big.jpg").write_bytes(jpeg_bytes(160, 120, seed=11))

    # SIGKILL in the middle: the job is left running, its output names reserved.
    worker = start_worker(config)
    running = wait_for("the job to run", job_in_state(data_dir, "big.jpg", "running"), worker)
    time.sleep(0.5)  # compiling the edit search alone takes longer
    worker.kill()
    job = jobs(data_dir)["big.jpg"]
    assert (job["state"], job["attempts"]) == ("running", 1)
    assert job["output_path"] == running["output_path"] == str(enhanced / "big.instafly.jpg")
    # What a kill at the worst moment leaves: the photo renamed into place, the sidecar not yet.
    (enhanced / "big.instafly.jpg").write_bytes(jpeg_bytes(160, 120, seed=99))
    (enhanced / ".tmp-k1ll3d.json").write_text('{"status": "do')
    (drop / "while-down.jpg").write_bytes(jpeg_bytes(80, 80, seed=12))

    worker = start_worker(config)
    found = wait_for("both photos", jobs_ended(data_dir, ["big.jpg", "while-down.jpg"]), worker)
    assert (found["big.jpg"]["state"], found["big.jpg"]["attempts"]) == ("done", 2)
    assert found["while-down.jpg"]["state"] == "done"
    assert "big.jpg: the worker (pid" in worker.output()
    assert output_files(data_dir) == [
        "big.instafly.jpg",
        "big.instafly.json",
        "while-down.instafly.jpg",
        "while-down.instafly.json",
    ]
    record = sidecar(data_dir, "big")
    assert (record["status"], record["output"]) == ("done", str(enhanced / "big.instafly.jpg"))
    with Image.open(enhanced / "big.instafly.jpg") as result:
        assert result.size == (160, 120)
    assert (
        sha256(enhanced / "big.instafly.jpg")
        != hashlib.sha256(jpeg_bytes(160, 120, seed=99)).hexdigest()
    )
    assert worker.terminate() == 0


def test_a_photo_that_kills_the_worker_every_time_fails_with_a_sidecar_and_can_be_retried(
    tmp_path: Path, trained_data_dir: Path, start_worker: Callable[[Path], WorkerProcess]
) -> None:
    from instaflyd.store.jobs import retry_job

    data_dir = with_model(trained_data_dir, tmp_path / "data")
    config = worker_config(tmp_path, data_dir, watch={"max_attempts": 1}, enhance={"steps": 20})
    drop, enhanced = data_dir / "drop", data_dir / "enhanced"
    (drop / "big.jpg").write_bytes(jpeg_bytes(160, 120, seed=14))
    worker = start_worker(config)
    wait_for("the job to run", job_in_state(data_dir, "big.jpg", "running"), worker)
    time.sleep(0.5)
    worker.kill()

    worker = start_worker(config)
    failed = wait_for("the job to fail", job_in_state(data_dir, "big.jpg", "failed"), worker)
    assert re.fullmatch(
        r"gave up after 1 attempt: the worker \(pid \d+\) stopped while enhancing this photo"
        r" \(crashed, ran out of memory or was killed\)",
        failed["reason"],
    )
    # The sidecar is renamed into place just after the job's state commits: wait for it, and
    # for no temp file to be left beside it.
    wait_until(lambda: output_files(data_dir) == ["big.instafly.json"], 10, "the sidecar alone")
    # Its path is recorded in the row after the file is in place: wait for the row to say so.
    sidecar_path = str(enhanced / "big.instafly.json")
    wait_until(lambda: jobs(data_dir)["big.jpg"]["sidecar_path"] == sidecar_path, 10, "its path")
    assert jobs(data_dir)["big.jpg"]["reason"] == failed["reason"]
    assert sidecar(data_dir, "big") == {
        "status": "failed",
        "input": str(drop / "big.jpg"),
        "reason": failed["reason"],
    }

    # "Retry" on the page: the old report goes, the photo and its sidecar take the plain names.
    conn = sqlite3.connect(data_dir / "instafly.db", timeout=30, isolation_level=None)
    assert retry_job(conn, failed["id"])
    conn.close()
    done = wait_for("the retried job", job_in_state(data_dir, "big.jpg", "done"), worker)
    assert done["attempts"] == 1
    assert output_files(data_dir) == ["big.instafly.jpg", "big.instafly.json"]
    assert sidecar(data_dir, "big")["status"] == "done"
    assert worker.terminate() == 0


def test_without_a_model_jobs_wait_and_run_once_one_is_promoted(
    tmp_path: Path, trained_data_dir: Path, start_worker: Callable[[Path], WorkerProcess]
) -> None:
    data_dir = tmp_path / "data"
    config = worker_config(tmp_path, data_dir, watch={"idle_unload_seconds": 1})
    worker = start_worker(config)
    (data_dir / "drop" / "first.jpg").write_bytes(jpeg_bytes(72, 48, seed=13))
    wait_for("a waiting job", job_in_state(data_dir, "first.jpg", "waiting_model"), worker)
    stats = run_cli_json("stats", "--json", config=config)
    assert stats["drop_folder"]["jobs"]["waiting_model"] == 1
    time.sleep(1)
    assert jobs(data_dir)["first.jpg"]["state"] == "waiting_model"

    promote_copy(trained_data_dir, data_dir, version=1)
    done = wait_for("the waiting job", job_in_state(data_dir, "first.jpg", "done"), worker)
    assert done["model_version"] == 1 and sidecar(data_dir, "first")["model_version"] == 1
    wait_for(
        "the idle model to be freed", lambda: "unloaded model version 1" in worker.output(), worker
    )

    # A newer version is used as soon as it is promoted.
    promote_copy(trained_data_dir, data_dir, version=2)
    (data_dir / "drop" / "second.jpg").write_bytes(jpeg_bytes(48, 72, seed=14))
    done = wait_for("the second job", job_in_state(data_dir, "second.jpg", "done"), worker)
    assert done["model_version"] == 2 and sidecar(data_dir, "second")["model_version"] == 2

    # SIGTERM in the middle of a job: it goes back to the queue, its attempt given back.
    # (8 megapixels: reading, editing and writing it at full size takes a while.)
    (data_dir / "drop" / "third.jpg").write_bytes(jpeg_bytes(3264, 2448, seed=15))
    wait_for("the third job to run", job_in_state(data_dir, "third.jpg", "running"), worker)
    assert worker.terminate() == 0, worker.output()
    job = jobs(data_dir)["third.jpg"]
    assert (job["state"], job["attempts"], job["output_path"]) == ("queued", 0, None)
    assert "SIGTERM received; stopping" in worker.output()
    assert output_files(data_dir) == [
        "first.instafly.jpg",
        "first.instafly.json",
        "second.instafly.jpg",
        "second.instafly.json",
    ]
