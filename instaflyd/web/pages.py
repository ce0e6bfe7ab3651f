"""The status page, the phone set-up page, images, the CA certificate and the page's actions."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import segno
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from markupsafe import Markup
from werkzeug.wrappers import Response as BaseResponse

from instaflyd import jobs
from instaflyd.backup import BackupError, SelfContained, latest_backup
from instaflyd.capture.ca_files import CER_FILE, CERT_FILE
from instaflyd.capture.wireguard import CHECK_HOST, CHECK_PATH
from instaflyd.config import Config
from instaflyd.imaging import CAPTURED_MAX_PIXELS
from instaflyd.status.collect import DaemonView, setup_section
from instaflyd.status.history import UnknownSeries, parse_request
from instaflyd.store import ImageFiles
from instaflyd.store.images import stored_image_ext
from instaflyd.store.jobs import get_job
from instaflyd.web.auth import has_session
from instaflyd.web.charts import history_charts
from instaflyd.web.database import get_db
from instaflyd.web.phones import phone_cards
from instaflyd.web.status import current_status
from instaflyd.web.thumbnails import (
    Busy,
    NoPreview,
    NotAllowed,
    Thumbnails,
    allowed_file,
    width_from,
)
from instaflyd.web.uploads import safe_name
from instaflyd.weights.file import WeightsError
from instaflyd.weights.receive import receive_weights

log = logging.getLogger("instafly.web")
bp = Blueprint("pages", __name__)

SHA256 = re.compile(r"[0-9a-f]{64}")
CA_FILES = {
    "pem": (CERT_FILE, "application/x-pem-file"),
    "cer": (CER_FILE, "application/x-x509-ca-cert"),
}
THUMBNAIL_CACHE = "private, max-age=3600"


@dataclass(frozen=True)
class LiveCheck:
    """Where the set-up page's script checks the phone (answered by the proxy itself)."""

    host: str
    path: str


def _config() -> Config:
    return current_app.config["INSTAFLY"]


def _daemon() -> DaemonView | None:
    return current_app.config["INSTAFLY_DAEMON"]


def qr_svg(text: str) -> Markup:
    """A QR code as inline SVG, dark on white so that it scans in dark mode too."""
    code = segno.make(text, error="m")
    return Markup(code.svg_inline(scale=5, border=2, dark="#111", light="#fff"))


@bp.get("/")
def index() -> str:
    status = current_status()
    try:
        _, range_ = parse_request("posts", request.args.get("range"))
    except UnknownSeries as exc:
        abort(400, str(exc))
    return render_template(
        "index.html",
        status=status,
        qr=qr_svg(status.setup.setup_url),
        history=history_charts(get_db().conn, range_, status),
    )


@bp.get("/setup")
def setup() -> str:
    """What a phone needs, without any captured data: public even with a password. The
    phones' codes and the devices list only for the logged-in household."""
    config = _config()
    section = setup_section(config)  # the box's own address, never the Host header
    logged_in = has_session()
    return render_template(
        "setup.html",
        setup=section,
        qr=qr_svg(section.setup_url),
        live_check=LiveCheck(CHECK_HOST, CHECK_PATH),
        wireguard=config.wireguard,
        phones=phone_cards(config) if logged_in else None,
        devices=current_status().devices if logged_in else None,
    )


@bp.get("/ca/instafly-ca.<kind>")
def ca_certificate(kind: str) -> Response:
    if kind not in CA_FILES:
        abort(404)
    name, mimetype = CA_FILES[kind]
    path = _config().mitmproxy_dir / name
    if not path.is_file():
        abort(404, "The proxy has not created its CA certificate yet: it does on its first start.")
    return send_file(
        path, mimetype=mimetype, as_attachment=True, download_name=f"instafly-ca.{kind}"
    )


@bp.get("/backup/latest")
def latest_backup_file() -> Response:
    """The newest daily backup as one self-contained file (its shared photos inside, made as it
    is sent), for the logged-in household to keep off the box and restore on a new SD card."""
    path = latest_backup(_config())
    if path is None:
        abort(404, "There is no backup yet: the box makes the first within minutes of starting.")
    try:
        export = SelfContained(path)
    except BackupError as exc:
        log.warning("the latest backup cannot be offered: %s", exc)
        abort(503, f"The latest backup cannot be downloaded: {exc}")
    return Response(
        export.chunks(),
        mimetype="application/x-tar",
        headers={
            "Content-Length": str(export.size),
            "Content-Disposition": f"attachment; filename={path.name}",
        },
    )


@bp.get("/images/<sha256>")
def captured_image(sha256: str) -> Response:
    """A thumbnail of a captured image, by content hash, from the store's image folder only."""
    if not SHA256.fullmatch(sha256):
        abort(404)
    ext = stored_image_ext(get_db().conn, sha256)
    if ext is None:
        abort(404)
    images = ImageFiles(_config().images_dir)
    path = images.path_for(sha256, ext)
    return _thumbnail_response(path, [images.root], CAPTURED_MAX_PIXELS)


@bp.get("/thumbs/job/<row_id:job_id>/<which>")
def job_thumbnail(job_id: int, which: str) -> Response:
    """Before/after thumbnails of a drop-folder job, only from the drop and output folders."""
    job = get_job(get_db().conn, job_id)
    if job is None or which not in ("before", "after"):
        abort(404)
    path = job.input_path if which == "before" else job.output_path
    if not path:
        abort(404)
    config = _config()
    roots = [config.watch.drop_dir, config.watch.output_dir]
    return _thumbnail_response(path, roots, config.enhance.max_pixels)


def _thumbnail_response(path: str | Path, roots: list[Path], max_pixels: int) -> Response:
    """The thumbnail at the width asked for (`?w=`, one of thumbnails.WIDTHS)."""
    thumbnails: Thumbnails = current_app.config["INSTAFLY_THUMBNAILS"]
    try:
        width = width_from(request.args.get("w"))
        data = thumbnails.jpeg(allowed_file(path, roots), width, max_pixels)
    except (NotAllowed, NoPreview, OSError):  # outside, odd width, gone, not an image, too large
        abort(404)
    except Busy:
        return Response(
            "previews are being drawn: try again in a moment\n",
            503,
            {"Retry-After": "2"},
            mimetype="text/plain",
        )
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = THUMBNAIL_CACHE
    return response


@bp.post("/actions/train")
def train_now() -> BaseResponse:
    daemon = _daemon()
    if daemon is None:
        flash("Training can be started only while the daemon (instaflyd run) is running.", "error")
    else:
        started, message = daemon.request_training()
        daemon.refresh_status()  # the page this redirects to shows the trainer starting
        flash(message[0].upper() + message[1:] + ".", "ok" if started else "error")
    return redirect(url_for("pages.index", _anchor="model"))


@bp.post("/actions/weights")
def upload_weights() -> BaseResponse:
    """The ImageNet weights file, sent from a computer that has internet (the box has none)."""
    upload = request.files.get("weights")
    if upload is None:
        flash("Choose the weights file first.", "error")
        return redirect(url_for("pages.index", _anchor="model"))
    name = upload.filename or "the uploaded file"
    try:
        status = receive_weights(_config(), upload.stream, safe_name(name))
    except WeightsError as exc:
        flash(f"Not taken: {exc}.", "error")
    else:
        flash(status.message[0].upper() + status.message[1:] + ": training can start.", "ok")
    return redirect(url_for("pages.index", _anchor="model"))


@bp.post("/actions/retry/<row_id:job_id>")
def retry(job_id: int) -> BaseResponse:
    queued = jobs.retry(get_db(), job_id)
    if (daemon := _daemon()) is not None:
        daemon.refresh_status()  # the page this redirects to shows the job queued
    if queued:
        flash(f"Job {job_id} is queued again.", "ok")
    else:
        flash(f"Job {job_id} cannot be retried: only failed or rejected jobs can.", "error")
    return redirect(url_for("pages.index", _anchor="drop"))
