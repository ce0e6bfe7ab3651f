"""Serving the page with waitress on a background thread of the daemon, and stopping it."""

from __future__ import annotations

import logging
import threading

from flask import Flask
from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger("instafly.web")


class WebServerError(Exception):
    """The page cannot listen (port in use, address not on this box)."""


class WebServer:
    """waitress on host:port, run by a daemon thread; `stop()` closes it."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        try:
            self.server = create_server(app, host=host, port=port, threads=8, ident="instafly")
        except OSError as exc:
            raise WebServerError(
                f"the status page cannot listen on {host}:{port}: {exc.strerror}; "
                "stop whatever uses the port or set web.port in the config"
            ) from exc
        self.address = f"{host}:{self.server.effective_port}"
        self._thread = threading.Thread(target=self._serve, name="waitress", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("status page on http://%s/", self.address)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listening socket and open connections; let running requests finish."""
        self.server.task_dispatcher.shutdown(timeout=timeout)
        wasyncore.close_all(self.server._map)
        self._thread.join(timeout)

    def _serve(self) -> None:
        try:
            self.server.run()
        except Exception:  # the loop ends with EBADF once stop() closed the sockets
            log.debug("waitress loop ended", exc_info=True)
