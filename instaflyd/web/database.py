"""One store connection per request, opened on first use and closed when the request ends.

A database too damaged to read (`store.integrity.damage_of`) is answered with a page that says
so and how to repair it, or a JSON error for the API (503), instead of a generic 500; so is one
that cannot be opened for a passing reason (`store.faults`: a read-only or full data folder),
with what to do and the repairs list.
"""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, current_app, g, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from instaflyd.status.collect import DaemonView
from instaflyd.store import Database, StoreError
from instaflyd.store.faults import FAULT_ACTION, FAULT_TEXT, Fault, transient_fault
from instaflyd.store.integrity import damage_of

log = logging.getLogger("instafly.web")


def get_db() -> Database:
    if "db" not in g:
        g.db = Database(current_app.config["INSTAFLY"].db_path)
    return g.db


def _close_db(_error: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def _damaged(exc: Exception) -> ResponseReturnValue:
    if damage_of(exc) is None:
        fault = transient_fault(exc)
        if fault is None:
            raise exc
        return _unavailable(exc, fault)
    log.warning("%s %s: the database is damaged: %s", request.method, request.path, exc)
    daemon: DaemonView | None = current_app.config["INSTAFLY_DAEMON"]
    problems = daemon.problems() if daemon is not None else []
    error = " ".join(str(exc).split())[:300]
    if request.path.startswith("/api/") or request.path in ("/metrics", "/healthz"):
        return jsonify(
            error=f"the database is damaged: {error}",
            problems=[{"id": p.id, "sentence": p.sentence, "action": p.action} for p in problems],
        ), 503
    return render_template("store_damaged.html", problems=problems, error=error), 503


def _unavailable(exc: Exception, fault: Fault) -> ResponseReturnValue:
    """The store cannot be opened or read for a passing reason (a read-only data folder, say):
    a 503 that says so, with the repairs list, instead of a generic 500."""
    daemon: DaemonView | None = current_app.config["INSTAFLY_DAEMON"]
    problems = daemon.problems() if daemon is not None else []
    error = " ".join(str(exc).split())[:300]
    if request.path.startswith("/api/") or request.path in ("/metrics", "/healthz"):
        return jsonify(
            error=f"the database cannot be opened: {FAULT_TEXT[fault]}",
            problems=[{"id": p.id, "sentence": p.sentence, "action": p.action} for p in problems],
        ), 503
    return render_template(
        "store_unavailable.html",
        problems=problems,
        reason=FAULT_TEXT[fault],
        action=FAULT_ACTION[fault],
        error=error,
    ), 503


def install(app: Flask) -> None:
    app.teardown_appcontext(_close_db)
    app.register_error_handler(sqlite3.DatabaseError, _damaged)
    app.register_error_handler(StoreError, _damaged)
