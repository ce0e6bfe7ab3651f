"""Safe mode: the page an invalid config gets instead of a crash loop (as Frigate does).

Every path shows the config's problems (file, line, key, fix) and how to fix them; /healthz and
/api/status answer 503 with the same problems. Nothing else runs until the file is fixed.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from instaflyd.config import HIDDEN, is_secret

bp = Blueprint("safe_mode", __name__)

KEY_PATH = re.compile(r": ((?:[\w.-]+ -> )*[\w.-]+): ")


def redact(problem: str) -> str:
    """Never show a secret key's value (`config.SECRET_KEYS`), even a wrongly typed one.

    `load_config` already hides them; this is the second lock, for problems from anywhere.
    """
    match = KEY_PATH.search(problem)
    if match and is_secret(tuple(match.group(1).split(" -> "))) and "(got " in problem:
        return problem[: problem.rindex("(got ")].rstrip() + f" ({HIDDEN})"
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
