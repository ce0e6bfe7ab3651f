"""The lock files are the tested set of versions: one pair per supported Python, each pinning
every dependency pyproject.toml names (the dev file also the test tools) at a version its range
allows, every pin with hashes. A dependency added to pyproject.toml without running
scripts/lock.sh fails here, instead of being left out of every install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from helpers import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PYTHONS = [c.rsplit(" ", 1)[1] for c in PYPROJECT["classifiers"] if "Python :: 3." in c]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)(?:\s*;[^\\]*)?\s*\\$")


def pins(path: Path) -> dict[str, tuple[Version, int]]:
    """name -> (version, number of hashes) of every pin in a lock file."""
    found: dict[str, tuple[Version, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match.group(1))
            found[current] = (Version(match.group(2)), 0)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def applies(requirement: Requirement, python: str) -> bool:
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({"python_version": python, "extra": ""})


@pytest.mark.parametrize("python", PYTHONS)
def test_each_python_has_a_lock_with_every_dependency_in_range_and_hashed(python: str) -> None:
    for name, wanted in (
        (f"lock-py{python}.txt", PYPROJECT["dependencies"]),
        (
            f"dev-py{python}.txt",
            PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["dev"],
        ),
    ):
        pinned = pins(REPO / "requirements" / name)
        assert len(pinned) > len(wanted), name
        for text in wanted:
            requirement = Requirement(text)
            if not applies(requirement, python):
                continue
            key = canonicalize_name(requirement.name)
            assert key in pinned, f"{name}: {requirement.name} is not pinned; run scripts/lock.sh"
            version, _ = pinned[key]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{name}: {requirement.name}=={version} is outside {requirement.specifier}"
            )
        unhashed = [package for package, (_, hashes) in pinned.items() if hashes == 0]
        assert unhashed == [], f"{name}: pins without a hash"
    # The appliance's versions are the dev file's versions: what the tests ran is what it gets.
    appliance = pins(REPO / "requirements" / f"lock-py{python}.txt")
    dev = pins(REPO / "requirements" / f"dev-py{python}.txt")
    assert {k: v[0] for k, v in appliance.items()} == {k: dev[k][0] for k in appliance}


def test_python_311_gets_mitmproxy_11_and_the_newer_ones_mitmproxy_12() -> None:
    majors = {
        python: pins(REPO / "requirements" / f"lock-py{python}.txt")["mitmproxy"][0].major
        for python in PYTHONS
    }
    assert majors == {"3.11": 11, "3.12": 12, "3.13": 12}


def test_every_pinned_dependency_has_an_upper_bound_in_pyproject() -> None:
    """An appliance installed with --latest next year gets no release no test has seen."""
    unbounded = [
        text
        for text in PYPROJECT["dependencies"]
        if not any(spec.operator in ("<", "<=", "==", "~=") for spec in Requirement(text).specifier)
    ]
    assert unbounded == []
