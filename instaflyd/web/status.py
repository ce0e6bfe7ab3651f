"""The status document for this request: the daemon's latest snapshot, or one built now.

In the daemon, `StatusEmitter` builds the document every few seconds and a request adds only
the daemon's live state and components; the page on its own (tests, `create_app` without a
daemon) builds it from the store for each request.
"""

from __future__ import annotations

from flask import current_app

from instaflyd.status.collect import DaemonView, collect_status, with_live_daemon
from instaflyd.status.document import StatusDocument
from instaflyd.web.database import get_db


def current_status() -> StatusDocument:
    config = current_app.config["INSTAFLY"]
    daemon: DaemonView | None = current_app.config["INSTAFLY_DAEMON"]
    snapshot = daemon.latest_status() if daemon is not None else None
    if snapshot is None or daemon is None:
        return collect_status(config, get_db().conn, daemon)
    return with_live_daemon(snapshot, config, daemon)
