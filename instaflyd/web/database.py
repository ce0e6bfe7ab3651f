"""One store connection per request, opened on first use and closed when the request ends."""

from __future__ import annotations

from flask import Flask, current_app, g

from instaflyd.store import Database


def get_db() -> Database:
    if "db" not in g:
        g.db = Database(current_app.config["INSTAFLY"].db_path)
    return g.db


def _close_db(_error: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def install(app: Flask) -> None:
    app.teardown_appcontext(_close_db)
