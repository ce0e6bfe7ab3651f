"""Fixtures shared by every test: temp data dirs and configs that never touch the user's files,
and the one tiny trained model of the session."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collections.abc import Iterator

from helpers import write_config
from support_model import (
    add_broken_post,
    add_generated_posts,
    tiny_config,
    train_tiny_model,
    trainer_pid_file,
)
from support_transparent import transparent_network as _transparent_network
from support_wireguard import WireGuardBox, running_wireguard_box


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the session's trained model is slow: training it takes seconds of both
    cores, so the fast tier never trains (it guards the model's rules with untrained scorers)."""
    for item in items:
        if "trained_data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _runtime_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The writer's small state notes go under the run's temp folder, not /dev/shm, so test runs
    leave nothing behind in shared memory (the daemons the tests start inherit it)."""
    os.environ["RUNTIME_DIRECTORY"] = str(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep $INSTAFLY_CONFIG and ~/.config out of every test."""
    monkeypatch.delenv("INSTAFLY_CONFIG", raising=False)
    monkeypatch.setattr("instaflyd.config.SYSTEM_CONFIG", tmp_path / "no-system-config.yaml")
    monkeypatch.setattr("instaflyd.config.USER_CONFIG", tmp_path / "no-user-config.yaml")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def config_file(tmp_path: Path, data_dir: Path) -> Path:
    """A small config for tests: temp data dir, input size 64, no ImageNet weights."""
    return write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(data_dir),
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
        },
    )


@pytest.fixture(scope="session")
def trained_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with one promoted tiny model, v1, trained once per session.

    Under xdist the workers share it: the first to ask trains it (in that worker's process),
    the others wait for it. Its store holds 72 generated posts and one labelled post whose image
    cannot be decoded. Treat it as read-only: a test that trains again, promotes or writes into
    the store works on a copy (`copy_of_trained`).
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    data_dir = root / "trained"
    with (root / "trained.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not trainer_pid_file(data_dir).exists():
            shutil.rmtree(data_dir, ignore_errors=True)  # what a failed attempt left
            data_dir.mkdir()
            config = tiny_config(data_dir)
            add_generated_posts(config, 72)
            add_broken_post(config)
            result = train_tiny_model(config)
            assert (result.promoted, result.version) == (True, 1)
            trainer_pid_file(data_dir).write_text(str(os.getpid()))
    return data_dir


@pytest.fixture
def copy_of_trained(tmp_path: Path, trained_data_dir: Path) -> Path:
    """A copy of the session's trained data dir (store and model files) for this test alone."""
    return shutil.copytree(trained_data_dir, tmp_path / "trained")


@pytest.fixture(scope="module")
def wireguard_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireGuardBox]:
    """The proxy with WireGuard on, the stand-in and the first phone, in network namespaces
    (`support_wireguard.running_wireguard_box`): one per test module, which adds its phones."""
    with running_wireguard_box(tmp_path_factory.mktemp("wireguard")) as box:
        yield box


@pytest.fixture
def transparent_network() -> Iterator[dict[str, str]]:
    """client -> box -> uplink namespaces, the box the client's gateway
    (`support_transparent.transparent_network`): the namespaces' names by role."""
    with _transparent_network() as names:
        yield names
