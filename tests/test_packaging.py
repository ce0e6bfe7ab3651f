"""The wheel carries the status page's files and the default config, and finds them installed."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    [built] = out.glob("instaflyd-*.whl")
    return built


def test_wheel_contains_web_folder_config_and_console_script(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "instaflyd/_assets/config/instafly.yaml" in names
    web = REPO / "instaflyd" / "web"
    web_files = {
        n for n in names if n.startswith(("instaflyd/web/templates/", "instaflyd/web/static/"))
    }
    repo_web = {
        p.relative_to(REPO).as_posix()
        for folder in (web / "templates", web / "static")
        for p in folder.rglob("*")
        if p.is_file()
    }
    assert repo_web and web_files == repo_web
    assert "instaflyd/cli.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "instaflyd = instaflyd.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_reads_its_packaged_defaults(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = (
        "from instaflyd.config import default_config_path, load_config;"
        "print(default_config_path());print(load_config(search=False).web.port)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    path, port = result.stdout.split()
    assert path == str(target / "instaflyd" / "_assets" / "config" / "instafly.yaml")
    assert port == "8081"
