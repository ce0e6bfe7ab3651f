"""Children die with the supervisor; a new `run` ends its own orphans and never another program's.

- A parent killed with SIGKILL takes its children with it (PR_SET_PDEATHSIG, set in the child).
- The real daemon killed with SIGKILL: its proxy, worker and capture writer are gone within
  seconds, and the next `run` has its proxy up at once (no "another program uses this port").
- A real `instaflyd worker` left by a dead daemon is ended by the next `run`; a worker started
  by hand, one on another data folder and other programs are not touched.
- The unit: KillMode=mixed (SIGKILL for every process of the service after the budget) and
  SIGHUP for `systemctl reload`.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, cli_env, wait_until, write_config
from support_daemon import daemon_config, running_daemon

from instaflyd.daemon.children import DAEMON_PID_ENV
from instaflyd.daemon.orphans import end_orphans, find_orphans
from instaflyd.processes import process_start_time, process_tree

SLEEP = "import time; time.sleep(120)"
PARENT = """
import sys, time
from instaflyd.daemon.children import ChildProcess
child = ChildProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def gone(pid: int) -> bool:
    return process_start_time(pid) is None  # ended (or a zombie waiting for init)


def test_a_child_dies_with_its_parent_even_when_the_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not gone(child)
        parent.kill()  # SIGKILL: no chance to stop its children itself
        parent.wait(5)
        wait_until(lambda: gone(child), 5, "the child to follow its parent")
    finally:
        parent.kill()
        if not gone(child):
            os.kill(child, signal.SIGKILL)


LAUNCHER = """
import subprocess, sys
quiet = subprocess.DEVNULL
child = subprocess.Popen(sys.argv[1:], start_new_session=True, stdout=quiet, stderr=quiet)
print(child.pid, flush=True)
"""


def orphaned(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start `argv` through a launcher that exits at once: a real orphan (not our child)."""
    launcher = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *argv],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(launcher.stdout)


def fake(data_dir: Path, command: str, env: dict[str, str] | None = None) -> int:
    """An orphaned sleeper whose command line reads `python -m instaflyd --data-dir D <command>`."""
    argv = [sys.executable, "-c", SLEEP, "-m", "instaflyd", "--data-dir", str(data_dir)]
    return orphaned([*argv, *command.split()], env)


def test_only_our_own_orphans_are_found_and_ended(tmp_path: Path) -> None:
    ours, other = tmp_path / "data", tmp_path / "other"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a daemon pid that is gone
    gone_daemon = {DAEMON_PID_ENV: str(dead.pid)}
    processes = {
        "orphan proxy": fake(ours, "proxy", gone_daemon),
        "orphan enhancer": fake(ours, "worker --enhancer", gone_daemon),
        "by hand": fake(ours, "worker"),  # no daemon named: a person started it
        "other data dir": fake(other, "proxy", gone_daemon),
        "not instaflyd": orphaned(
            [sys.executable, "-c", SLEEP, "--data-dir", str(ours), "proxy"], gone_daemon
        ),
        "live daemon": fake(ours, "run"),  # a daemon that still runs...
    }
    # ...and its child: that daemon's business, not ours.
    live = {DAEMON_PID_ENV: str(processes["live daemon"])}
    processes["live daemon's child"] = fake(ours, "worker", live)
    # And our own children are never orphans, whatever they look like.
    processes["our child"] = subprocess.Popen(
        [sys.executable, "-c", SLEEP, "-m", "instaflyd", "--data-dir", str(ours), "proxy"],
        env={**os.environ, **gone_daemon},
    ).pid
    try:
        time.sleep(0.5)  # their command lines are in /proc
        found = {o.pid: o for o in find_orphans(ours)}
        names = {name for name, pid in processes.items() if pid in found}
        assert names == {"orphan proxy", "orphan enhancer"}
        assert found[processes["orphan enhancer"]].command == "worker --enhancer"
        ended = end_orphans(ours, stop_seconds=3)
        assert {o.pid for o in ended} == {processes[name] for name in names}
        for name, pid in processes.items():
            if name in names:
                wait_until(lambda pid=pid: gone(pid), 5, name)  # type: ignore[misc]
            else:
                assert not gone(pid), name
        assert find_orphans(ours) == []
    finally:
        for pid in processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_daemon_takes_its_children_and_the_next_run_starts_at_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    config, web_port, proxy_port = daemon_config(tmp_path, data)
    with running_daemon(config, data, web_port, proxy_port) as daemon:
        wait_until(
            lambda: all(
                daemon.status()["components"][name]["state"] == "running"
                for name in ("proxy", "worker")
            ),
            60,
            "the proxy and the worker",
        )
        components = daemon.status()["components"]
        children = process_tree(daemon.process.pid)[1:]  # proxy, its writer, worker, ...
        assert components["proxy"]["pid"] in children and components["worker"]["pid"] in children
        assert len(children) >= 3
        killed = time.monotonic()
        daemon.process.kill()
        daemon.process.wait(5)
        wait_until(lambda: all(gone(pid) for pid in children), 20, "every child to end")
        took = time.monotonic() - killed

    with running_daemon(config, data, web_port, proxy_port) as again:
        wait_until(
            lambda: again.status()["components"]["proxy"]["state"] == "running",
            60,
            "the next run's proxy",
        )
        up = time.monotonic()
        assert "another program" not in again.output()
        assert again.status()["components"]["proxy"]["restarts"] == 0
    print(
        f"children gone {took:.1f} s after the daemon's SIGKILL; next proxy up {up - killed:.1f} s"
    )
    assert took < 10


@pytest.mark.slow
def test_the_next_run_ends_a_real_worker_a_dead_daemon_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config, web_port, proxy_port = daemon_config(tmp_path, data)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = subprocess.Popen(
        [sys.executable, "-m", "instaflyd", "--config", str(config), "--data-dir", str(data),
         "worker"],
        env=cli_env(**{DAEMON_PID_ENV: str(dead.pid)}),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    other_config = write_config(
        tmp_path / "other.yaml", {"data_dir": str(tmp_path / "other"), "model": {"weights": "none"}}
    )
    by_hand = subprocess.Popen(
        [sys.executable, "-m", "instaflyd", "--config", str(other_config), "worker"],
        env=cli_env(**{DAEMON_PID_ENV: str(dead.pid)}),  # another data folder: not ours
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: (data / "instafly.db").exists(), 30, "the left worker to start")
        time.sleep(1)
        with running_daemon(config, data, web_port, proxy_port) as daemon:
            assert left.wait(15) == 0  # SIGTERM: it stopped cleanly
            ended = wait_until(
                lambda: [
                    e
                    for e in daemon.status()["capture"]["recent_errors"]
                    if e["kind"] == "orphans_ended"
                ],
                20,
                "the orphans' event",
            )
            assert ended[0]["message"] == (
                f"ended 1 process(es) an earlier daemon left running: worker (pid {left.pid})"
            )
            assert by_hand.poll() is None
    finally:
        for process in (left, by_hand):
            process.kill()
            process.wait(10)


def test_the_unit_kills_every_process_of_the_service_and_reloads_with_sighup() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "systemd" / "instaflyd.service")
    service = unit["Service"]
    # mixed: SIGTERM to the daemon (it stops its children within the budget), then SIGKILL to
    # whatever of the service's cgroup is left; "process" or "none" would leave children behind.
    assert service["KillMode"] == "mixed"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
