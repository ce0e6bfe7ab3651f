"""The status page: a Flask app factory, served by waitress inside `instaflyd run`.

`create_app(config, daemon)` builds the page for a config (tests build one on a temp data dir);
`daemon` is the running supervisor, or None for a page that only reads the store.
`create_safe_mode_app(problems, source)` is what an invalid config gets instead: one page that
shows every problem and how to fix it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask, Response
from werkzeug.routing import IntegerConverter, Map, ValidationError

from instaflyd.capture.wireguard import CHECK_HOST
from instaflyd.config import Config
from instaflyd.status.collect import DaemonView
from instaflyd.web import (
    api,
    auth,
    database,
    formatting,
    hostcheck,
    pages,
    phones,
    photos,
    safe_mode,
    uploads,
)
from instaflyd.web.password import PagePassword
from instaflyd.web.sessions import SessionRegistry
from instaflyd.web.throttle import LoginThrottle
from instaflyd.web.thumbnails import CACHE_FOLDER, Thumbnails, srcset

SESSION_LIFETIME = timedelta(days=30)
# connect-src: the set-up page's live check loads the check the proxy answers on CHECK_HOST.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    f"connect-src 'self' http://{CHECK_HOST} https://{CHECK_HOST}; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(config: Config, daemon: DaemonView | None = None) -> Flask:
    """The page; it lets in only the password kept in the data dir (or `web.password`)."""
    app = _flask()
    app.config.update(
        INSTAFLY=config,
        INSTAFLY_DAEMON=daemon,
        INSTAFLY_PASSWORD=PagePassword(config.data_dir, config.web.password),
        INSTAFLY_SESSIONS=SessionRegistry(config.data_dir, SESSION_LIFETIME.total_seconds()),
        INSTAFLY_THROTTLE=LoginThrottle(),
        INSTAFLY_THUMBNAILS=Thumbnails(config.data_dir / CACHE_FOLDER),
        SECRET_KEY=auth.load_secret_key(config.data_dir),
        SESSION_COOKIE_NAME="instafly_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.jinja_env.globals["thumbnail_srcset"] = srcset
    uploads.remove_stale_uploads(config.watch.drop_dir)  # what a killed upload left
    hostcheck.install(app, hostcheck.OwnNames(config.web.allowed_hosts, config.web.host))
    database.install(app)
    photos.install(app)  # its body limit applies before the CSRF check reads a form
    auth.install(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(phones.bp)
    app.jinja_env.globals["phone_qr"] = phones.qr_for
    app.register_blueprint(api.bp)
    # For the server: the largest body it takes, and who may send more than a small one.
    app.config["INSTAFLY_MAX_BODY"] = photos.largest_upload(config) + 1
    app.config["INSTAFLY_ADMITS_BODY"] = auth.body_admission(app, photos.UPLOAD_ENDPOINTS)
    return app


def create_safe_mode_app(problems: list[str], source: Path | None) -> Flask:
    app = _flask()
    app.config.update(INSTAFLY_PROBLEMS=problems, INSTAFLY_SOURCE=source)
    hostcheck.install(app, hostcheck.OwnNames())
    app.register_blueprint(safe_mode.bp)
    return app


class RowId(IntegerConverter):
    """`<row_id:name>`: a number SQLite can hold (below 2**63); a larger one is a 404, never an
    OverflowError in the store."""

    def __init__(self, map: Map, *args: object, **kwargs: object) -> None:
        super().__init__(map, max=2**63 - 1)

    def to_python(self, value: str) -> int:
        if len(value) > 19:  # 2**63 has 19 digits; int() of 5,000 digits raises, not 404s
            raise ValidationError()
        return int(super().to_python(value))


def _flask() -> Flask:
    app = Flask(__name__)  # templates/ and static/ beside this module
    app.url_map.converters["row_id"] = RowId
    formatting.install(app)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
