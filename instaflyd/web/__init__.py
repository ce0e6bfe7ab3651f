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
)
from instaflyd.web.password import PagePassword
from instaflyd.web.sessions import SessionRegistry
from instaflyd.web.throttle import LoginThrottle

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
        SECRET_KEY=auth.load_secret_key(config.data_dir),
        SESSION_COOKIE_NAME="instafly_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    hostcheck.install(app, hostcheck.OwnNames(config.web.allowed_hosts, config.web.host))
    database.install(app)
    photos.install(app)  # its body limit applies before the CSRF check reads a form
    auth.install(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(phones.bp)
    app.jinja_env.globals["phone_qr"] = phones.qr_for
    app.register_blueprint(api.bp)
    return app


def create_safe_mode_app(problems: list[str], source: Path | None) -> Flask:
    app = _flask()
    app.config.update(INSTAFLY_PROBLEMS=problems, INSTAFLY_SOURCE=source)
    hostcheck.install(app, hostcheck.OwnNames())
    app.register_blueprint(safe_mode.bp)
    return app


def _flask() -> Flask:
    app = Flask(__name__)  # templates/ and static/ beside this module
    formatting.install(app)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
