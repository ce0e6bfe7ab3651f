"""The optional password (`web.password`) and CSRF protection of the page's actions.

With a password set, every route except the public ones (/healthz, the login form, the
phone set-up page and its CA certificate, static files) needs either the session cookie the
login form sets or HTTP basic authentication with that password (any user name), which is what
scripts and Prometheus use. Without a password everything is open, as on a trusted home LAN.

Every POST (login, logout, train now, retry a job, send photos) must carry the session's CSRF
token, as the form field `csrf_token` or the header `X-CSRF-Token` (the page carries it in
`<meta name="csrf-token">`), so another web site open in the same browser cannot make it act on
the box.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from instaflyd.fsutil import atomic_write_bytes

bp = Blueprint("auth", __name__)

SECRET_FILE = "web-secret.key"
WRONG_PASSWORD_DELAY = 0.5
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
    atomic_write_bytes(path, key, mode=0o600)
    return key


def password_matches(given: str | None) -> bool:
    expected = current_app.config["INSTAFLY_PASSWORD"]
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def is_authenticated() -> bool:
    if current_app.config["INSTAFLY_PASSWORD"] is None or session.get("authenticated"):
        return True
    basic = request.authorization
    return basic is not None and basic.type == "basic" and password_matches(basic.password)


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


def _require_password() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS or is_authenticated():
        return None
    if request.path.startswith(NOT_PAGES):
        return Response(
            "authentication required: HTTP basic with the web.password\n",
            401,
            {"WWW-Authenticate": 'Basic realm="Instafly", charset="UTF-8"'},
            mimetype="text/plain",
        )
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _check_csrf() -> None:
    if request.method != "POST":
        return
    # Scripts on the page send it as a header (X-CSRF-Token); forms as a field.
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "The form has expired or did not come from this page; reload and try again.")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    target = _safe_next(request.values.get("next"))
    if current_app.config["INSTAFLY_PASSWORD"] is None:
        return redirect(target)
    if request.method == "POST":
        if password_matches(request.form.get("password")):
            session.clear()
            session["authenticated"] = True
            session.permanent = True
            return redirect(target)
        time.sleep(WRONG_PASSWORD_DELAY)  # slows down guessing; the other threads keep serving
        flash("Wrong password.", "error")
    return render_template("login.html", next=target)


@bp.post("/logout")
def logout() -> Response:
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
