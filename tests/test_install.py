"""install.sh: idempotent developer install, the system install's files, preflight messages."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, missing_on_this_machine, run_cli, wait_until
from support_daemon import daemon_config, http_get, running_daemon

from instaflyd.web.password import PASSWORD_FILE, PasswordHash

INSTALL = REPO / "install.sh"


def install(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_help_explains_the_modes() -> None:
    result = install("--help")
    assert result.returncode == 0
    for words in (
        "./install.sh ",
        "--system",
        "--root DIR",
        "/etc/instafly/instafly.yaml",
        "never overwritten",
        "Python >= 3.11",
    ):
        assert words in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bogus",), "install.sh: unknown option '--bogus' (see ./install.sh --help)"),
        (("--root", "/tmp/x"), "install.sh: --root goes with --system"),
    ],
)
def test_bad_options_are_refused(args: tuple[str, ...], message: str) -> None:
    result = install(*args)
    assert (result.returncode, result.stderr.strip()) == (2, message)


@pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "instaflyd").exists(), reason="needs ./install.sh"
)
@pytest.mark.slow
def test_a_second_developer_install_is_quick_and_changes_nothing() -> None:
    venv = REPO / ".venv"
    install("--no-browser")  # brings the venv up to date if the checkout changed
    stamp = venv / ".instafly-install-stamp"
    before = (stamp.stat().st_mtime_ns, sorted(p.name for p in (venv / "bin").iterdir()))
    started = time.monotonic()
    result = install("--no-browser")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert f"{venv} is up to date" in result.stdout
    assert elapsed < 30
    assert (stamp.stat().st_mtime_ns, sorted(p.name for p in (venv / "bin").iterdir())) == before


@pytest.mark.slow
def test_system_install_into_a_root_folder(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = install("--system", "--root", str(root), "--no-venv")
    assert result.returncode == 0, result.stderr
    config = root / "etc/instafly/instafly.yaml"
    assert yaml.safe_load(config.read_text()) == {
        "data_dir": "/var/lib/instafly",
        "watch": {"drop_dir": "/srv/instafly/drop", "output_dir": "/srv/instafly/enhanced"},
    }
    for folder, mode in (
        ("var/lib/instafly", 0o750),
        ("srv/instafly", 0o750),  # the household's photos: the service's user and group only
        ("srv/instafly/drop", 0o750),
        ("srv/instafly/enhanced", 0o750),
    ):
        assert (root / folder).is_dir() and (root / folder).stat().st_mode & 0o777 == mode
    unit = root / "etc/systemd/system/instaflyd.service"
    assert unit.read_text() == (REPO / "systemd/instaflyd.service").read_text()
    enabled = root / "etc/systemd/system/multi-user.target.wants/instaflyd.service"
    # systemctl --root links as seen from inside the root; the fallback links relatively
    assert os.readlink(enabled) in ("/etc/systemd/system/instaflyd.service", "../instaflyd.service")
    assert "Status page:     http://" in result.stdout and ":8081/" in result.stdout
    assert "server " in result.stdout and "port 8080" in result.stdout
    # The config may hold passwords: the service's group reads it, other users do not.
    assert config.stat().st_mode & 0o777 == 0o640
    # Without the venv (--no-venv) the service's first start makes the password and logs it.
    assert "Password:        set already, or printed once by the service's first start" in (
        result.stdout
    )
    # the written config is valid
    check = run_cli("check-config", config=config, data_dir=tmp_path / "data")
    assert check.returncode == 0, check.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)  # pip installs TensorFlow into a new venv: minutes beside other tests
def test_system_install_builds_a_venv_that_runs_the_appliance(tmp_path: Path) -> None:
    """The real `--system` path, into a root folder: a venv with Instafly installed from a wheel
    (not this checkout), whose `instaflyd run` serves the page with its templates and assets."""
    root = tmp_path / "root"
    result = install("--system", "--root", str(root))
    assert result.returncode == 0, result.stderr
    venv = root / "opt/instafly/venv"
    assert f"Installing Instafly into {venv}" in result.stdout
    # The status page's first password, shown once in the closing message, kept only hashed.
    password = re.search(r"Password: +(\S+) +\(shown only this once", result.stdout).group(1)
    kept = root / "var/lib/instafly" / PASSWORD_FILE
    assert kept.stat().st_mode & 0o777 == 0o600 and password not in kept.read_text()
    assert PasswordHash.decode(kept.read_text()).matches(password)
    assert (root / "etc/instafly/instafly.yaml").stat().st_mode & 0o777 == 0o640
    imported = subprocess.run(
        [venv / "bin/python", "-c", "import instaflyd; print(instaflyd.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout.strip()
    assert Path(imported).is_relative_to(venv / "lib") and "site-packages" in imported

    data_dir = tmp_path / "data"
    config, web_port, proxy_port = daemon_config(tmp_path, data_dir)
    installed = [str(venv / "bin/instaflyd")]
    with running_daemon(
        config, data_dir, web_port, proxy_port, instaflyd=installed, cwd=tmp_path
    ) as daemon:
        wait_until(
            lambda: daemon.status()["components"]["proxy"]["state"] == "running", 60, "proxy"
        )
        code, page = daemon.get("/")
        assert code == 200 and b"Instafly" in page and b"instafly.css" in page
        code, css = http_get(daemon.url + "/static/instafly.css")
        assert (code, css) == (200, (REPO / "instaflyd/web/static/instafly.css").read_bytes())
        assert daemon.stop() == 0

    started = time.monotonic()
    again = install("--system", "--root", str(root))
    assert again.returncode == 0, again.stderr
    assert password not in again.stdout and "Password:        set already" in again.stdout
    assert f"{venv} is up to date" in again.stdout
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_system_install_never_overwrites_an_existing_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = root / "etc/instafly/instafly.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("web:\n  port: 9999\n")
    result = install("--system", "--root", str(root), "--no-venv")
    assert result.returncode == 0, result.stderr
    assert f"Keeping the existing {config}" in result.stdout
    assert config.read_text() == "web:\n  port: 9999\n"


@pytest.mark.slow
def test_a_busy_port_is_reported_before_installing(tmp_path: Path) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", 8081))
        except OSError:
            pytest.skip("port 8081 is taken on this machine")
        sock.listen()
        result = install("--system", "--root", str(tmp_path / "root"), "--no-venv")
    assert result.returncode == 0, result.stderr
    assert "install.sh: warning: port 8081 is in use" in result.stderr
    assert "Instafly will not start until it is free" in result.stderr


def test_system_install_without_root_is_refused() -> None:
    as_user = (
        [] if os.geteuid() != 0 else ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    )
    result = subprocess.run(
        [*as_user, str(INSTALL), "--system"], capture_output=True, text=True, cwd=REPO
    )
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "install.sh: --system needs root: sudo ./install.sh --system",
    )


def stand_in(folder: Path, name: str, script: str) -> Path:
    """A command of that name that does what `script` says, found first on PATH."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("command", "script", "message"),
    [
        (
            "python3.9",
            'case "$1" in --version) echo "Python 3.9.18";; *) exit 1;; esac',
            "install.sh: Python 3.11 or newer is needed (found: Python 3.9.18). "
            "On Debian/Ubuntu: sudo apt install python3 python3-venv",
        ),
        (
            "uname",
            "echo armv7l",
            "install.sh: a 64-bit CPU (x86_64 or aarch64) is needed: "
            "TensorFlow has no build for armv7l",
        ),
        (
            "df",
            'echo "Filesystem 1M-blocks Used Available Capacity Mounted"; echo "/dev/x 9000 8900 100 99% /"',
            "install.sh: at least 3000 MB of free disk space are needed in {root}/opt/instafly "
            "for TensorFlow and mitmproxy (free: 100 MB)",
        ),
    ],
)
def test_preflight_refuses_with_a_clear_reason(
    tmp_path: Path, command: str, script: str, message: str
) -> None:
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, command, script)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    if command.startswith("python"):
        env["PYTHON"] = str(bin_dir / command)
    root = tmp_path / "root"
    result = subprocess.run(
        [str(INSTALL), "--system", "--root", str(root)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stderr.strip()) == (1, message.format(root=root))
    assert not (root / "opt/instafly/venv").exists()  # refused before installing anything


def another_python() -> str:
    """A Python 3.11 or newer of another X.Y than the one running the tests."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[1-9]*/bin/python3"))),
        *filter(None, (shutil.which(f"python3.{minor}") for minor in range(11, 15))),
    ]
    for candidate in candidates:
        found = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        if found and found != here:
            return candidate
    missing_on_this_machine(f"needs a second Python 3.11+ besides {here}")
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_a_venv_made_by_another_python_is_made_anew(tmp_path: Path) -> None:
    # A developer ran PYTHON=python3.13 ./install.sh once and plain ./install.sh now: this
    # Python's lock installed into the other Python's venv gave a proxy that could not start
    # (mitmproxy 11's passlib against 3.13's bcrypt 5).
    other, venv = another_python(), tmp_path / "venv"
    subprocess.run([other, "-m", "venv", "--without-pip", str(venv)], check=True)
    this = getattr(sys, "_base_executable", sys.executable)
    result = subprocess.run(
        [str(INSTALL), "--no-browser", "--venv", str(venv)],
        capture_output=True, text=True, timeout=900, cwd=REPO, env={**os.environ, "PYTHON": this},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{venv} was made with Python " in result.stdout
    probe = "import sys, mitmproxy.addons, instaflyd; print('%d.%d' % sys.version_info[:2])"
    ran = subprocess.run([venv / "bin" / "python", "-c", probe], capture_output=True, text=True)
    assert (ran.returncode, ran.stdout.strip()) == (
        0,
        f"{sys.version_info[0]}.{sys.version_info[1]}",
    ), ran.stderr
