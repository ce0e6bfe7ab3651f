"""The machine-readable side: /api/status and /api/history (JSON), /metrics (Prometheus),
/healthz (public)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify, request

from instaflyd.status.history import UnknownSeries, history_series, parse_request
from instaflyd.web.database import get_db
from instaflyd.web.metrics import render_metrics
from instaflyd.web.status import current_status

bp = Blueprint("api", __name__)

HEARTBEAT_STALE_SECONDS = 30.0
CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/api/status")
def status() -> Response:
    return jsonify(current_status().as_dict())


@bp.get("/api/history")
def history() -> tuple[Response, int]:
    """The points of one chart: ?series=posts|capture|enhanced|models&range=day|month|year."""
    try:
        series, range_ = parse_request(request.args.get("series"), request.args.get("range"))
    except UnknownSeries as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(history_series(get_db().conn, series, range_, time.time()).as_dict()), 200


@bp.get("/metrics")
def metrics() -> Response:
    return Response(render_metrics(current_status), content_type=CONTENT_TYPE_PROMETHEUS)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Cheap (no database): is the daemon's loop alive, and is any problem of the repairs list
    an error? Healthy while it stops cleanly, too; the errors are named, warnings only listed."""
    daemon = current_app.config["INSTAFLY_DAEMON"]
    if daemon is None:
        return jsonify(status="ok", state="standalone"), 200
    components = daemon.components()
    degraded = sorted(name for name, c in components.items() if c.state == "degraded")
    age = daemon.heartbeat_age()
    problems = daemon.problems()
    errors = [p for p in problems if p.severity == "error"]
    if age >= HEARTBEAT_STALE_SECONDS:
        status = "stalled"
    elif daemon.state == "stopping":
        status = "stopping"
    elif errors:
        status = "error"
    else:
        status = "ok"
    body = {
        "status": status,
        "state": daemon.state,
        "degraded": degraded,
        "loop_age_seconds": round(age, 2),
        "problems": [
            {"id": p.id, "severity": p.severity, "sentence": p.sentence} for p in problems
        ],
    }
    return jsonify(body), 200 if status in ("ok", "stopping") else 503
