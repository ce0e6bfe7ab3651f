"""The README's commands are the real ones: the two set-up commands and the demo quick start."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, cli_env

README = (REPO / "README.md").read_text(encoding="utf-8")
INSTALL_AND_RUN = "./install.sh && .venv/bin/instaflyd run"
INSTALL_AND_TEST = "./install.sh && .venv/bin/python -m pytest"


def shell_block_after(heading: str) -> str:
    """The first ```sh block after a heading."""
    section = README[README.index(heading) :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, f"no sh block after {heading!r}"
    return match.group(1)


def test_the_two_set_up_commands_are_in_the_readme_and_ci_runs_the_test_one() -> None:
    assert shell_block_after("**Install and run**").strip() == INSTALL_AND_RUN
    assert shell_block_after("**Install and test:**").strip() == INSTALL_AND_TEST
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.strip().splitlines()[-1] == INSTALL_AND_TEST


@pytest.mark.slow
def test_the_demo_quick_start_runs_as_written(tmp_path: Path) -> None:
    """Every line of the demo up to `instaflyd run` (which serves until stopped), with the venv
    that runs the tests for the README's `.venv` (CI's second Python runs from `.venv-newest`)."""
    script = shell_block_after("### Demo quick start")
    lines = script.splitlines()
    run = next(i for i, line in enumerate(lines) if line.startswith(".venv/bin/instaflyd run"))
    demo = tmp_path / "instafly-demo"
    venv_bin = Path(sys.executable).parent
    body = "\n".join(lines[:run]).replace("/tmp/instafly-demo", str(demo))
    assert ".venv/bin/instaflyd import" in body
    body = body.replace(".venv/bin/", f"{venv_bin}/")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", body],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "posts new 32" in result.stdout  # the import's summary line
    assert re.search(r"v1 promoted: \d+ posts", result.stdout)
    [sidecar] = (demo / "out").glob("*.instafly.json")
    record = json.loads(sidecar.read_text())
    assert record["status"] == "done"
    assert Path(record["output"]).is_file()
    assert record["model_version"] == 1
