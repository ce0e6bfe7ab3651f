"""Is the config file still what the daemon runs with? A broken or changed file is said at once.

The children read the config file themselves each time they start. A file broken while the
daemon runs was once found only when a child restarted (and then stayed degraded while
/healthz said ok); now the daemon looks at the file's size and modification time every few
seconds and, when they change, validates it:

- invalid: "config.invalid" (an error) on the repairs list, with the first problem and how to
  see them all; the daemon keeps running with what it has;
- valid but different from what runs: "config.changed" (a warning): reload to apply it;
- the same as what runs (a change undone): neither.

`systemctl reload` (SIGHUP) applies a valid file by restarting the children with it, and an
invalid one puts the daemon in safe mode, as at start (`run`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from instaflyd.config import Config, ConfigError
from instaflyd.repairs import RepairsRegistry

log = logging.getLogger("instafly.daemon")

CHECK_EVERY_SECONDS = 3.0
INVALID = "config.invalid"
CHANGED = "config.changed"
RELOAD_HOW = "sudo systemctl reload instaflyd (or restart the box)"


class ConfigWatch:
    def __init__(
        self, running: Config, load: Callable[[], Config], registry: RepairsRegistry
    ) -> None:
        self.running = running
        self.load = load
        self.registry = registry
        self.source = running.source
        self._seen = signature(self.source)

    def check(self) -> None:
        """Look at the file; validate it if it changed. Cheap when it did not (one stat)."""
        if self.source is None:  # the packaged defaults only: nothing to watch
            return
        current = signature(self.source)
        if current == self._seen:
            return
        self._seen = current
        name = self.source.name
        try:
            loaded = self.load()
        except ConfigError as exc:
            more = len(exc.problems) - 1
            self.registry.resolve(CHANGED)
            self.registry.report(
                INVALID,
                "error",
                f"The settings file {name} has "
                + (f"{more + 1} mistakes" if more else "a mistake")
                + f": {exc.problems[0]}. The box keeps running with the settings it has, but a"
                " part that has to restart cannot start until the file is fixed.",
                f"Fix the file (`instaflyd check-config` lists every problem), then: {RELOAD_HOW}.",
                title="The settings file has a mistake",
            )
            return
        self.registry.resolve(INVALID)
        if loaded.model_dump() == self.running.model_dump():
            self.registry.resolve(CHANGED)
            return
        self.registry.report(
            CHANGED,
            "warning",
            f"The settings file {name} has changed; the box still runs with the previous settings.",
            f"To use the new settings: {RELOAD_HOW}.",
            title="New settings are not in use yet",
        )


def signature(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino
