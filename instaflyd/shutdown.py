"""One shutdown budget, from systemd's TimeoutStopSec down.

systemd gives `instaflyd run` STOP_BUDGET_SECONDS between SIGTERM and the SIGKILL that then
reaches every process of the tree (`TimeoutStopSec` with `KillMode=mixed` in
systemd/instaflyd.service; a test keeps the two equal). Each process keeps a share of what it
was given for its own last steps and hands the rest down, in the environment variable
INSTAFLY_STOP_SECONDS, to the children it stops:

    daemon   20 s: the proxy, the worker and a trainer get 20 - 3 = 17 s, then the daemon closes
             the page and the store;
    proxy    17 s: mitmproxy closes its connections, and the capture writer writes what it was
             handed (its backlog included) within 17 - 2 = 15 s;
    worker   17 s: its enhancer gets 17 - 2 = 15 s to put a job in progress back in the queue.

So every deadline falls inside the one above it, and a process that is still running when its
own time is up is stopped by its parent, which logs at ERROR what that loses, instead of
systemd's silent SIGKILL taking the writer's backlog with it. A process started by hand (no
variable set) has the whole budget.
"""

from __future__ import annotations

import math
import os

STOP_BUDGET_SECONDS = 20.0  # = TimeoutStopSec in systemd/instaflyd.service
ENV = "INSTAFLY_STOP_SECONDS"
DAEMON_SHARE = 3.0  # closing the page (2 s) and the store
PROXY_SHARE = 2.0  # mitmproxy closing its connections
WORKER_SHARE = 2.0  # stopping the watcher, recovering, closing the store
MIN_SECONDS = 1.0


def stop_seconds() -> float:
    """How long this process has from SIGTERM until it is killed."""
    try:
        given = float(os.environ.get(ENV, ""))
    except ValueError:
        return STOP_BUDGET_SECONDS
    return given if math.isfinite(given) and given > 0 else STOP_BUDGET_SECONDS


def for_children(own_share: float) -> float:
    """What this process gives the children it stops, keeping `own_share` for itself."""
    return max(MIN_SECONDS, stop_seconds() - own_share)


def child_env(own_share: float) -> dict[str, str]:
    """The environment entry that tells a child its budget."""
    return {ENV: f"{for_children(own_share):g}"}
