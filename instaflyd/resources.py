"""Files that ship with Instafly outside the package: the default config.

In a wheel it lives in `instaflyd/_assets/` (pyproject.toml maps `config/instafly.yaml` there); in
a source checkout or an editable install it is read from the checkout itself. The page's templates
and static files live inside the package, beside `instaflyd/web/__init__.py`.
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
