"""Files that ship with Instafly: the status page's templates and static files, the default config.

In a wheel they live in `instaflyd/_assets/` (pyproject.toml maps the top-level `web/` and
`config/instafly.yaml` there); in a source checkout or an editable install they are read from
the checkout itself.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_PACKAGED = _PACKAGE / "_assets"
_CHECKOUT = _PACKAGE.parent


def asset_path(*parts: str) -> Path:
    """Path of a shipped file, e.g. asset_path("config", "instafly.yaml")."""
    root = _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT
    return root.joinpath(*parts)
