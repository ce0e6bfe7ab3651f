"""Photos from the phone: send them to the drop-folder queue, follow them, get the results back.

`POST /api/photos` (multipart, field `photo`, one or more files) answers 202 with each photo's
job; `GET /api/photos` lists the latest photos, newest first, with their state, scores, edits
and URLs (and `words`: the same in the household's terms, as the page shows them);
`GET /api/photos/<id>` is one of them; `/api/photos/<id>/enhanced` downloads the
enhanced photo at full resolution, EXIF included. The page's "Enhance photos" control uses the
same endpoints. Every POST needs the CSRF token (`X-CSRF-Token`), like every action of the page.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file

from instaflyd.config import Config
from instaflyd.fsutil import file_inside
from instaflyd.jobs.view import JobView, job_view
from instaflyd.store.jobs import Job, get_job, recent_jobs
from instaflyd.web.database import get_db
from instaflyd.web.formatting import ScoreChange, edits_in_words, score_change
from instaflyd.web.uploads import UploadRefused, receive_upload
from instaflyd.weights.file import WEIGHTS_BYTES

log = logging.getLogger("instafly.web")

bp = Blueprint("photos", __name__)

MAX_FILES_PER_REQUEST = 20
LISTED = 30
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the files


@dataclass(frozen=True)
class PhotoWords:
    """What the gallery says of a photo, in the household's terms (web/formatting.py)."""

    scores: ScoreChange | None  # expected likes per 1,000 followers, before and after
    edits: str  # "a little brighter, warmer, ..."; "" when none


URL_FIELDS = ("before", "after", "enhanced")  # JobView's URLs, under `urls` in the API


@dataclass(frozen=True)
class Photo:
    """One photo in `/api/photos`: the job as `jobs.view` shows it, and the gallery's words."""

    job: JobView
    words: PhotoWords

    @classmethod
    def of(cls, job: Job, config: Config) -> Photo:
        view = job_view(job, config.watch, with_edits=True)
        words = PhotoWords(
            score_change(view.score_before, view.score_after), edits_in_words(view.edits)
        )
        return cls(view, words)

    def as_json(self) -> dict[str, Any]:
        """The API's shape: the view's fields with `state` named `status`, its previews and
        download under `urls`, and `words`."""
        fields = asdict(self.job)
        fields["status"] = fields.pop("state")
        fields["urls"] = {name: fields.pop(name) for name in URL_FIELDS}
        return {**fields, "words": asdict(self.words)}


def _config() -> Config:
    return current_app.config["INSTAFLY"]


def upload_limit(config: Config) -> int:
    """The largest request body `POST /api/photos` reads: one file at the size limit."""
    return int(config.enhance.max_file_mb * 1_000_000) + MULTIPART_OVERHEAD


@bp.post("/api/photos/coming")
def photos_coming() -> tuple[Response, int]:
    """The page says a photo upload begins (a file was chosen): the worker starts loading the
    model now, so that the photo is enhanced soon after it arrives."""
    announce_upload(_config())
    return jsonify(loading=True), 202


def announce_upload(config: Config) -> None:
    """Touch the file the worker watches (`enhancer_wanted_path`); never fails the request."""
    path = config.enhancer_wanted_path
    try:
        path.touch()
        os.utime(path)
    except OSError as exc:
        log.warning("could not tell the worker an upload begins: %s", exc)


@bp.post("/api/photos")
def send_photos() -> tuple[Response, int]:
    announce_upload(_config())  # for a client that did not say so before sending
    files = request.files.getlist("photo")
    if not files:
        return jsonify(error="no photo: send the files as multipart/form-data field 'photo'"), 400
    if len(files) > MAX_FILES_PER_REQUEST:
        return jsonify(error=f"at most {MAX_FILES_PER_REQUEST} photos in one request"), 400
    config, db = _config(), get_db()
    received = []
    try:
        for file in files:
            upload = receive_upload(config, db, file.stream, file.filename)
            received.append({"id": upload.id, "name": upload.name, "status": upload.status})
    except UploadRefused as exc:  # too large (413), or no room for it (507)
        return jsonify(error=str(exc), photos=received), exc.status
    return jsonify(photos=received), 202


@bp.get("/api/photos")
def list_photos() -> Response:
    config = _config()
    photos = [Photo.of(row, config).as_json() for row in recent_jobs(get_db().conn, LISTED)]
    return jsonify(photos=photos)


@bp.get("/api/photos/<row_id:job_id>")
def one_photo(job_id: int) -> Response:
    row = get_job(get_db().conn, job_id)
    if row is None:
        abort(404)
    return jsonify(Photo.of(row, _config()).as_json())


@bp.get("/api/photos/<row_id:job_id>/enhanced")
def enhanced_photo(job_id: int) -> Response:
    """The enhanced JPEG itself, full resolution and EXIF, from the output folder only."""
    row = get_job(get_db().conn, job_id)
    config = _config()
    path = file_inside(row.output_path, [config.watch.output_dir]) if row else None
    if row is None or row.state != "done" or path is None:
        abort(404)
    return send_file(
        path, mimetype="image/jpeg", as_attachment=True, download_name=download_name(path.name)
    )


def download_name(name: str) -> str:
    """A file's name as a download may carry it: control characters (a newline is allowed in a
    file name on Linux, and a Samba user can make one) cannot go into a header."""
    return "".join("_" if unicodedata.category(ch)[0] == "C" else ch for ch in name) or "photo.jpg"


def install(app: Any) -> None:
    app.before_request(limit_upload_size)
    app.register_blueprint(bp)


UPLOAD_ENDPOINTS = {"photos.send_photos", "pages.upload_weights"}


def largest_upload(config: Config) -> int:
    """The largest request body the page takes (a photo, or the weights file)."""
    return max(upload_limit(config), WEIGHTS_BYTES + MULTIPART_OVERHEAD)


def limit_upload_size() -> None:
    """Only the two uploads may send more than the app's small default body limit."""
    if request.endpoint == "photos.send_photos":
        request.max_content_length = upload_limit(_config())
    elif request.endpoint == "pages.upload_weights":
        request.max_content_length = WEIGHTS_BYTES + MULTIPART_OVERHEAD
