"""The status page alone, in a process of its own: the real app served by the real waitress
set-up (`WebServer`), so a test can measure the page's own memory, files and threads while it
attacks it over real sockets.

Usage: python support_page.py CONFIG.yaml  (prints "listening PORT" once it accepts)
`page_process(config_path)` runs it and stops it at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class PageProcess:
    process: subprocess.Popen[str]
    port: int
    lines: list[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def status_field(self, name: str) -> int:
        """A /proc/PID/status figure in bytes (VmHWM: the peak resident memory so far)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(name)

    def open_files(self) -> list[str]:
        found = []
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                found.append(os.readlink(fd))
        return found


@contextlib.contextmanager
def page_process(config: Path, env: dict[str, str] | None = None) -> Iterator[PageProcess]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "support_page.py"), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    port = 0
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("listening "):
            port = int(line.split()[1])
            break
    if not port:
        process.wait(10)
        raise AssertionError("the page did not start:\n" + "\n".join(lines))
    stdout = process.stdout
    threading.Thread(
        target=lambda: lines.extend(line.rstrip("\n") for line in stdout), daemon=True
    ).start()
    try:
        yield PageProcess(process, port, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def main() -> int:
    import logging

    from instaflyd.config import load_config
    from instaflyd.web import create_app
    from instaflyd.web.server import WebServer

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
    config = load_config(Path(sys.argv[1]))
    web = WebServer(create_app(config), config.web.host, config.web.port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    web.start()
    print("listening", web.address.rsplit(":", 1)[1], flush=True)
    stopped.wait()
    web.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
