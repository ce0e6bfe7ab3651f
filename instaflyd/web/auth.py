"""The status page's password, its log-in sessions and the CSRF protection of its actions.

There is always a password (see `password`): every route except the public ones (/healthz, the
log-in form, the phone set-up page and its CA certificate, static files) needs either a session
cookie from the log-in form or HTTP basic authentication with the password (any user name),
which is what scripts and Prometheus use.

A session counts only while the box still keeps its id and the password is the one it was made
under (see `sessions`): logging out, or changing the password, ends it even for a copied cookie.
Wrong passwords are throttled per client on both paths (see `throttle`).

Every POST (log in, log out, train now, retry a job, send photos) must carry the session's CSRF
token, as the form field `csrf_token` or the header `X-CSRF-Token` (the page carries it in
`<meta name="csrf-token">`), so another web site open in the same browser cannot make it act on
the box.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadSignature
from werkzeug.http import parse_cookie
from werkzeug.wrappers import Response as BaseResponse

from instaflyd.fsutil import atomic_write_bytes
from instaflyd.web.password import PagePassword
from instaflyd.web.sessions import SessionRegistry
from instaflyd.web.throttle import LoginThrottle, retry_after

log = logging.getLogger("instafly.web")

bp = Blueprint("auth", __name__)

SECRET_FILE = "web-secret.key"
PUBLIC_ENDPOINTS = frozenset(
    {"static", "api.healthz", "auth.login", "pages.setup", "pages.ca_certificate"}
)
NOT_PAGES = ("/api/", "/metrics", "/images/", "/thumbs/")  # answered 401, not a redirect


def load_secret_key(data_dir: Path) -> bytes:
    """The key that signs session cookies; kept in data_dir (0600) so logins survive restarts."""
    path = data_dir / SECRET_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    try:
        atomic_write_bytes(path, key, mode=0o600)
    except OSError as exc:  # a read-only or full data folder: logins last until a restart
        log.error("the page's login key cannot be saved (%s): logins last until a restart", exc)
    return key


def _password() -> PagePassword:
    return current_app.config["INSTAFLY_PASSWORD"]


def _sessions() -> SessionRegistry:
    return current_app.config["INSTAFLY_SESSIONS"]


def _throttle() -> LoginThrottle:
    return current_app.config["INSTAFLY_THROTTLE"]


def has_session() -> bool:
    return _sessions().is_open(session.get("sid"), _password().tag())


def csrf_token() -> str:
    """This session's CSRF token (created on first use); templates put it in every form."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def install(app: Flask) -> None:
    """Register the password and CSRF checks that run before every request."""
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(_require_password)
    app.before_request(_check_csrf)


def _require_password() -> BaseResponse | None:
    if request.endpoint in PUBLIC_ENDPOINTS or has_session():
        return None
    basic = request.authorization
    if basic is not None and basic.type == "basic":
        wait = _throttle().attempt(request.remote_addr)
        if wait > 0:
            return _too_many(wait)
        if _password().matches(basic.password):
            _throttle().succeeded(request.remote_addr)
            return None
        log.warning("wrong password (HTTP basic auth) from %s", request.remote_addr)
    if request.path.startswith(NOT_PAGES) or basic is not None:
        return Response(
            "authentication required: HTTP basic with the status page's password\n",
            401,
            {"WWW-Authenticate": 'Basic realm="Instafly", charset="UTF-8"'},
            mimetype="text/plain",
        )
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def body_admission(app: Flask, upload_endpoints: set[str]) -> Callable[[str, str | None], bool]:
    """For the server: may a request to `path` with this Cookie header send a large body?
    Only to an upload route, and only with the cookie of an open session. It runs when the
    request's headers are in, before its body is read, so nothing a stranger sends is held."""
    paths = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint in upload_endpoints}
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    max_age = int(app.permanent_session_lifetime.total_seconds())
    name = app.config["SESSION_COOKIE_NAME"]
    sessions: SessionRegistry = app.config["INSTAFLY_SESSIONS"]
    password: PagePassword = app.config["INSTAFLY_PASSWORD"]

    def admits(path: str, cookie_header: str | None) -> bool:
        if path not in paths or not cookie_header or serializer is None:
            return False
        value = parse_cookie(cookie_header).get(name)
        if not value:
            return False
        try:
            data = serializer.loads(value, max_age=max_age)
        except BadSignature:
            return False
        return isinstance(data, dict) and sessions.is_open(data.get("sid"), password.tag())

    return admits


def _too_many(wait: float) -> Response:
    return Response(
        "too many wrong passwords from this address: try again later\n",
        429,
        {"Retry-After": retry_after(wait)},
        mimetype="text/plain",
    )


CSRF_REFUSED = "The form has expired or did not come from this page; reload and try again."


def _check_csrf() -> Response | None:
    if request.method != "POST":
        return None
    # Scripts on the page send it as a header (X-CSRF-Token); forms as a field.
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        if request.path.startswith("/api/"):  # the API answers JSON, its refusals too
            response = jsonify(error=CSRF_REFUSED)
            response.status_code = 400
            return response
        abort(400, CSRF_REFUSED)
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | str | tuple[str, int, dict[str, str]]:
    target = _safe_next(request.values.get("next"))
    if has_session():
        return redirect(target)
    if request.method == "POST":
        wait = _throttle().attempt(request.remote_addr)
        if wait > 0:
            flash(f"Too many wrong passwords: try again in {retry_after(wait)} seconds.", "error")
            page = render_template("login.html", next=target)
            return page, 429, {"Retry-After": retry_after(wait)}
        if _password().matches(request.form.get("password")):
            _throttle().succeeded(request.remote_addr)
            _sessions().close(session.get("sid"))
            session.clear()
            session["sid"] = _sessions().open(_password().tag())
            session.permanent = True
            return redirect(target)
        log.warning("wrong password (log-in form) from %s", request.remote_addr)
        flash("Wrong password.", "error")
    return render_template("login.html", next=target)


@bp.post("/logout")
def logout() -> BaseResponse:
    _sessions().close(session.get("sid"))
    session.clear()
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no open redirect to another host)."""
    if not target:
        return url_for("pages.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.index")
    return target
