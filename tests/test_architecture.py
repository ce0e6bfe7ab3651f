"""The package boundaries in pyproject.toml's [tool.importlinter], checked by `lint-imports`.

The first test runs the contracts on the code as it is. The second runs the same contracts on a
copy of the package with one forbidden import added per contract, so a contract that has stopped
catching anything (a renamed package, a typo in a module name) fails here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return [contract["name"] for contract in config["contracts"]]


def test_the_code_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    names = contract_names()
    assert len(names) == 7
    assert f"Contracts: {len(names)} kept, 0 broken." in result.stdout


# One forbidden import per contract: (module file, line to add, what the report must name).
VIOLATIONS = {
    "The supervisor, the page, the proxy and the capture writer never load TensorFlow": (
        "web/pages.py",
        "def _train_inline():\n    import tensorflow\n",  # inside a function counts too
        "instaflyd.web.pages -> tensorflow",
    ),
    "The worker's loop never loads TensorFlow: only its enhancer process does, while there is"
    " work": (
        "watch/worker.py",
        "def _enhance_inline():\n    from instaflyd.watch import job\n",
        "instaflyd.watch.worker -> instaflyd.watch.job",
    ),
    "The supervisor and the page never load mitmproxy (nor the cryptography it brings)": (
        "daemon/run.py",
        "from instaflyd.capture.ca import ensure_ca\n",
        "instaflyd.daemon.run -> instaflyd.capture.ca",
    ),
    "The store imports no producer or consumer of its data": (
        "store/jobs.py",
        "from instaflyd.watch import rules\n",
        "instaflyd.store.jobs -> instaflyd.watch.rules",
    ),
    "The shared modules (config, files, processes, logging) import no package of instaflyd": (
        "fsutil.py",
        "from instaflyd.store import records\n",
        "instaflyd.fsutil -> instaflyd.store.records",
    ),
    "The policies (when to train) read only the store and the config": (
        "policy/training.py",
        "from instaflyd.capture import hosts\n",
        "instaflyd.policy.training -> instaflyd.capture.hosts",
    ),
    "Layers in the order the data flows: a layer imports only the layers below it": (
        "capture/ingest.py",
        "from instaflyd.status import document\n",
        "instaflyd.capture.ingest -> instaflyd.status.document",
    ),
}


def test_each_contract_catches_a_forbidden_import(tmp_path: Path) -> None:
    assert sorted(VIOLATIONS) == sorted(contract_names())
    shutil.copytree(
        ROOT / "instaflyd", tmp_path / "instaflyd",
        ignore=shutil.ignore_patterns("__pycache__", "_assets"),
    )  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for module, line, _ in VIOLATIONS.values():
        path = tmp_path / "instaflyd" / module
        path.write_text(path.read_text() + "\n" + line)

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Contracts: 0 kept, {len(VIOLATIONS)} broken." in result.stdout
    report = " ".join(result.stdout.split())  # long names wrap across lines
    for chain in (chain for _, _, chain in VIOLATIONS.values()):
        assert chain in report, f"{chain!r} not reported:\n{result.stdout}"


def test_architecture_md_lists_the_layers_of_the_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    order = " > ".join(f"`{layer.replace('instaflyd.', '')}`" for layer in layers)
    text = " ".join((ROOT / "ARCHITECTURE.md").read_text().split())
    assert order in text


def test_nothing_refers_to_a_file_outside_the_repository() -> None:
    """The code and docs once cited a design file that was never in the repository."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist): no list of tracked files")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    # Spelled in parts so that this file does not name them itself (and is checked like the rest).
    outside = ("DESIGN" + ".md", "../" + "shared")
    offenders = []
    for name in tracked:
        if name.startswith("tests/fixtures/"):
            continue
        try:
            text = (ROOT / name).read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        if any(reference in text for reference in outside):
            offenders.append(name)
    assert offenders == []
