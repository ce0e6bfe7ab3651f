"""The worker's side of its enhancer process: start it, relay its output, notice its end, stop it.

The enhancer (`instaflyd worker --enhancer`, see `enhancer`) is a child of the worker; its
output goes through the worker, line by line, to the worker's stderr, without TensorFlow's
start-up chatter (`logs.is_native_noise`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

from instaflyd.config import Config
from instaflyd.logs import is_native_noise

log = logging.getLogger("instafly.worker")

EXIT_NO_MODEL = 3  # the enhancer's exit status when the model cannot be loaded
WORKER_PID_ENV = "INSTAFLY_WORKER_PID"  # tells the enhancer which worker started it


class EnhancerProcess:
    """At most one running enhancer."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.process: subprocess.Popen[str] | None = None
        self._relay: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        argv = [sys.executable, "-m", "instaflyd"]
        if self.config.source is not None:
            argv += ["--config", str(self.config.source)]
        argv += ["--data-dir", str(self.config.data_dir), "worker", "--enhancer"]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, WORKER_PID_ENV: str(os.getpid())},
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self._relay = threading.Thread(
            target=_relay, args=(self.process,), name="relay-enhancer", daemon=True
        )
        self._relay.start()
        log.info("enhancer started (pid %d)", self.process.pid)

    def reap(self) -> int | None:
        """The exit status once the enhancer has ended (then it is forgotten); else None."""
        if self.process is None or self.process.poll() is None:
            return None
        code, self.process = self.process.returncode, None
        if self._relay is not None:
            self._relay.join(1)
        return code

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds; the exit status (None: none ran)."""
        process = self.process
        if process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error(
                "the enhancer (pid %d) did not stop within %.0f s; killing it (its job is"
                " recovered: queued again)",
                process.pid,
                timeout,
            )
            process.kill()
            process.wait(5)
        return self.reap()


def _relay(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if not is_native_noise(line):
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(line)
                sys.stderr.flush()
    process.stdout.close()
