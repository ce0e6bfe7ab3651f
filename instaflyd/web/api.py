"""The machine-readable side: /api/status (JSON), /metrics (Prometheus), /healthz (public)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from instaflyd.web.metrics import render_metrics
from instaflyd.web.status import current_status

bp = Blueprint("api", __name__)

HEARTBEAT_STALE_SECONDS = 30.0
CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/api/status")
def status() -> Response:
    return jsonify(current_status().as_dict())


@bp.get("/metrics")
def metrics() -> Response:
    return Response(render_metrics(current_status), content_type=CONTENT_TYPE_PROMETHEUS)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Cheap (no database): is the daemon's loop alive? Healthy while it stops cleanly, too."""
    daemon = current_app.config["INSTAFLY_DAEMON"]
    if daemon is None:
        return jsonify(status="ok", state="standalone"), 200
    components = daemon.components()
    degraded = sorted(name for name, c in components.items() if c.state == "degraded")
    age = daemon.heartbeat_age()
    healthy = age < HEARTBEAT_STALE_SECONDS
    body = {
        "status": ("stopping" if daemon.state == "stopping" else "ok") if healthy else "stalled",
        "state": daemon.state,
        "degraded": degraded,
        "loop_age_seconds": round(age, 2),
    }
    return jsonify(body), 200 if healthy else 503
