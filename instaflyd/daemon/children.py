"""One child process of the daemon: started, its output relayed with its name, stopped in time.

Each child is a real `python -m instaflyd <command>` process (or any argv, for tests). Its stdout
and stderr are read line by line by a thread and written to the daemon's stderr prefixed with
the component's name, so journald shows which part said what, without TensorFlow's start-up
chatter (`logs.is_native_noise`); the last lines are kept for the status page (why did it crash?).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Protocol

from instaflyd import shutdown
from instaflyd.config import Config
from instaflyd.logs import is_native_noise
from instaflyd.processes import die_with_parent

DAEMON_PID_ENV = "INSTAFLY_DAEMON_PID"  # names the daemon in its descendants (`orphans`)

log = logging.getLogger("instafly.daemon")

# The environment systemd gives the daemon itself; children must not talk to systemd.
_DAEMON_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
KEEP_LINES = 40
# A line of our own logging below WARNING (`logs.FORMAT`): never the reason a child ended.
_CALM_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d \S+\[\d+\] (?:DEBUG|INFO) ")


class Listener(Protocol):
    """Takes the marker lines out of a child's output (`lifelines.Lifelines`)."""

    def environment(self) -> dict[str, str]: ...

    def hear(self, component: str, line: str) -> bool: ...


def instaflyd_argv(config: Config, *command: str) -> list[str]:
    """The command line of a component: the same config file and data dir as the daemon."""
    argv = [sys.executable, "-m", "instaflyd"]
    if config.source is not None:
        argv += ["--config", str(config.source)]
    argv += ["--data-dir", str(config.data_dir), *command]
    return argv


def child_environment() -> dict[str, str]:
    """The daemon's environment, without systemd's notify variables, with the child's share of
    the shutdown budget (`instaflyd.shutdown`) and the daemon's pid (which its descendants
    inherit: how a later daemon knows them as orphans, see `orphans`)."""
    inherited = {key: value for key, value in os.environ.items() if key not in _DAEMON_ONLY_ENV}
    return {
        **inherited,
        **shutdown.child_env(shutdown.DAEMON_SHARE),
        DAEMON_PID_ENV: str(os.getpid()),
    }


class ChildProcess:
    """A running child process and the thread relaying its output."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        nice: int = 0,
        relay_to: IO[str] | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.lines: collections.deque[str] = collections.deque(maxlen=KEEP_LINES)
        self.started = time.time()  # for people; intervals use started_monotonic
        self.started_monotonic = time.monotonic()
        self.cpu_seconds: float | None = None  # user + system CPU time, once reaped by `poll`
        self._relay_to = relay_to
        self.listener = listener  # another daemon may take the child over (a reload)
        env = child_environment()
        if listener is not None:
            env.update(listener.environment())
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent(signal.SIGTERM),  # it only calls prctl: no lock
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        if nice:
            # Lower the child's priority before it gets to heavy work (importing TensorFlow).
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self.process.pid, nice)
        self._relay = threading.Thread(target=self._relay_output, name=f"relay-{name}", daemon=True)
        self._relay.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        """The exit status once the child has ended (negative: killed by that signal).

        Reaped with wait4 so that the kernel's account of its CPU time is kept (`cpu_seconds`).
        """
        if self.process.returncode is None:
            try:
                pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (Popen.wait): the status is there
                return self.process.poll()
            if pid:
                self.cpu_seconds = usage.ru_utime + usage.ru_stime
                self.process.returncode = os.waitstatus_to_exitcode(status)
        return self.process.returncode

    def last_line(self) -> str | None:
        """The child's last non-empty output line."""
        self._relay.join(timeout=0.5 if self.poll() is not None else 0)
        for line in reversed(self.lines):
            if line.strip():
                return line.strip()
        return None

    def last_error(self) -> str | None:
        """Why it ended, as far as its output says: its last line that is not one of our own
        log lines below WARNING (a killed child's last INFO line is no reason). None if none."""
        self._relay.join(timeout=0.5 if self.poll() is not None else 0)
        for line in reversed(self.lines):
            if line.strip() and not _CALM_LOG_LINE.match(line):
                return line.strip()
        return None

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def _relay_output(self) -> None:
        assert self.process.stdout is not None
        out = self._relay_to or sys.stderr
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if is_native_noise(line):  # TensorFlow's start-up chatter in the trainer
                continue
            listener = self.listener
            if listener is not None and line.startswith("\x1e") and listener.hear(self.name, line):
                continue  # a heartbeat or a problem report, not a log line
            self.lines.append(line)
            with contextlib.suppress(OSError, ValueError):
                out.write(f"{self.name} | {line}\n")
                out.flush()
        self.process.stdout.close()


def stop_all(children: Sequence[ChildProcess], timeout: float) -> dict[str, int | None]:
    """SIGTERM every child, wait up to `timeout` seconds in all, SIGKILL the ones still there.

    Returns each child's exit status.
    """
    deadline = time.monotonic() + timeout
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        if child.wait(deadline - time.monotonic()) is None:
            log.error(
                "%s did not stop within %.0f s of the shutdown budget; killing it (what it had"
                " not finished is lost)",
                child.name,
                timeout,
            )
            child.kill()
            child.wait(2)
    return {child.name: child.poll() for child in children}
