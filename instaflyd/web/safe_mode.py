"""Safe mode: the page an invalid config gets instead of a crash loop (as Frigate does).

Every path shows the config's problems (file, line, key, fix) and how to fix them; /healthz and
/api/status answer 503 with the same problems. Nothing else runs until the file is fixed.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request

bp = Blueprint("safe_mode", __name__)


def redact(problem: str) -> str:
    """Never show a password's value on the page, even a wrongly typed one."""
    if "password" in problem and "(got " in problem:
        return problem[: problem.index("(got ")].rstrip() + " (value hidden)"
    return problem


@bp.route("/", defaults={"path": ""})
@bp.route("/<path:path>")
def explain(path: str) -> tuple[Response | str, int]:
    problems = [redact(p) for p in current_app.config["INSTAFLY_PROBLEMS"]]
    source = current_app.config["INSTAFLY_SOURCE"]
    if path in ("healthz", "api/status") or request.accept_mimetypes.best == "application/json":
        return jsonify(status="safe_mode", config=str(source) if source else None,
                       problems=problems), 503  # fmt: skip
    return render_template("safe_mode.html", problems=problems, source=source), 503
