"""The types, checked by mypy with pyproject.toml's [tool.mypy], and the style, by ruff.

The first test runs mypy on the package as it is (with the project's cache, so a second run is
quick). The second runs it on a copy with one planted mistake per rule: a wrong type anywhere is
an error, an unannotated function is one only where the configuration is strict (the store, the
status document, the job and weights homes), so a strict section that has stopped applying (a
renamed package, a typo in a module pattern) fails here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STRICT_PACKAGES = ("store", "status", "jobs", "weights")


def run(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "MYPY_FORCE_COLOR": "0"}
    return subprocess.run(
        [str(BIN / tool), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_mypy_finds_no_error_in_the_package() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found"), result.stdout


def test_ruff_finds_nothing_to_fix_or_reformat() -> None:
    check = run("ruff", "check", ".")
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = run("ruff", "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.slow
def test_mypy_catches_a_planted_mistake_and_is_strict_where_configured(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "instaflyd", tmp_path / "instaflyd", ignore=_ignored)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    untyped = "\n\ndef planted_untyped(value):\n    return value\n"
    planted = {package: untyped for package in STRICT_PACKAGES}
    planted["web"] = untyped + '\n\nplanted_wrong: int = "not a number"\n'
    files = []
    for package, text in planted.items():
        module = tmp_path / "instaflyd" / package / "planted.py"
        assert module.parent.is_dir(), f"no package instaflyd.{package}"
        module.write_text('"""Planted by tests/test_types.py."""\n' + text)
        files.append(str(module.relative_to(tmp_path)))
    result = run("mypy", "--cache-dir", str(tmp_path / "cache"), *files, cwd=tmp_path)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    for package in STRICT_PACKAGES:
        assert any(
            line.startswith(f"instaflyd/{package}/planted.py:") and "[no-untyped-def]" in line
            for line in errors
        ), f"instaflyd.{package} is not checked strictly:\n{result.stdout}"
    web = [line for line in errors if line.startswith("instaflyd/web/planted.py:")]
    assert len(web) == 1 and "[assignment]" in web[0], result.stdout  # normal, not strict


def _ignored(_folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name in ("__pycache__", ".mypy_cache")]
