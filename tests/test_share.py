"""The shared folder: `install.sh --system --share` and a real smbd serving it on loopback.

A laptop or the iPhone Files app reaches the drop and enhanced folders through Samba. The test
runs Debian's smbd on a free loopback port with the share definition install.sh writes
(systemd/instafly-share.sh), a real worker with a tiny trained model behind it, and smbclient
as the laptop: it puts a photo into drop/ and gets the enhanced one back from enhanced/.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    REPO,
    cli_env,
    free_port,
    jpeg_bytes,
    missing_on_this_machine,
    wait_until,
    write_config,
)
from PIL import Image
from support_model import TINY_MODEL
from test_install import install

SHARE_SCRIPT = REPO / "systemd" / "instafly-share.sh"
SMBD = Path("/usr/sbin/smbd")
PASSWORD = "a-share-password-42"


def share_section(folder: Path | str, user: str) -> str:
    return subprocess.run(
        ["sh", str(SHARE_SCRIPT), str(folder), user], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.slow
def test_system_install_with_share_writes_samba_files_and_a_password(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = install("--system", "--share", "--root", str(root), "--no-venv")
    assert result.returncode == 0, result.stderr
    conf = root / "etc/samba/instafly.conf"
    assert conf.read_text() == share_section("/srv/instafly", "instafly")
    text = conf.read_text()
    for line in ("path = /srv/instafly", "valid users = instafly", "guest ok = no"):
        assert f"   {line}\n" in text
    smb = (root / "etc/samba/smb.conf").read_text()
    assert smb.count("include = /etc/samba/instafly.conf\n") == 1
    secret = root / "etc/instafly/share-password"
    password = secret.read_text().strip()
    assert len(password) >= 16 and secret.stat().st_mode & 0o777 == 0o600
    assert f"user instafly, password {password}" in result.stdout
    assert "smb://" in result.stdout and "/Instafly" in result.stdout

    again = install("--system", "--share", "--root", str(root), "--no-venv")
    assert again.returncode == 0, again.stderr
    assert secret.read_text().strip() == password  # kept: phones keep working
    assert (root / "etc/samba/smb.conf").read_text() == smb  # included once


def test_share_needs_the_system_install_and_odd_names_are_refused() -> None:
    result = install("--share")
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "install.sh: --share goes with --system",
    )
    odd = subprocess.run(
        ["sh", str(SHARE_SCRIPT), "/srv/x\n[evil]", "instafly"], capture_output=True, text=True
    )
    assert odd.returncode == 2 and odd.stdout == ""


# --- a real smbd on loopback ---------------------------------------------------------------------


def samba_config(tmp: Path, port: int, share: Path, user: str) -> Path:
    """smbd's own [global] for a private loopback server, then the share install.sh writes."""
    state = tmp / "samba"
    for name in ("private", "lock", "state", "cache", "pid", "log", "ncalrpc"):
        (state / name).mkdir(parents=True, exist_ok=True)
    (tmp / "instafly.conf").write_text(share_section(share, user))
    config = tmp / "smb.conf"
    config.write_text(
        f"""[global]
   server role = standalone server
   map to guest = never
   smb ports = {port}
   interfaces = 127.0.0.1
   bind interfaces only = yes
   disable netbios = yes
   private dir = {state}/private
   lock directory = {state}/lock
   state directory = {state}/state
   cache directory = {state}/cache
   pid directory = {state}/pid
   ncalrpc dir = {state}/ncalrpc
   log file = {state}/log/smbd.log
   passdb backend = tdbsam:{state}/private/passdb.tdb
   load printers = no
   printing = bsd
   printcap name = /dev/null
   disable spoolss = yes
include = {tmp / "instafly.conf"}
"""
    )
    return config


@contextlib.contextmanager
def running(argv: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """`argv` running, its output in `log` (a pipe nobody reads would fill and stall it)."""
    with log.open("w") as output:
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, text=True, **kwargs
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def smbclient(port: int, *args: str, auth: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["smbclient", "//127.0.0.1/Instafly", "-p", str(port), *auth, *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.slow
def test_a_photo_put_into_the_share_comes_back_enhanced(
    tmp_path: Path, copy_of_trained: Path
) -> None:
    if not SMBD.exists() or shutil.which("smbclient") is None:
        missing_on_this_machine("Samba is missing (sudo apt install samba smbclient)")
    if os.geteuid() != 0:
        missing_on_this_machine("smbd needs root here (it switches to the share's user)")
    user = pwd.getpwuid(os.geteuid()).pw_name
    share = tmp_path / "srv"
    (share / "drop").mkdir(parents=True)
    (share / "enhanced").mkdir()
    port = free_port()
    conf = samba_config(tmp_path, port, share, user)
    subprocess.run(
        ["smbpasswd", "-c", str(conf), "-s", "-a", user],
        input=f"{PASSWORD}\n{PASSWORD}\n", text=True, check=True, capture_output=True,
    )  # fmt: skip

    data = copy_of_trained  # a promoted tiny model
    worker_config = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(data),
            **TINY_MODEL,
            "watch": {"drop_dir": str(share / "drop"), "output_dir": str(share / "enhanced"),
                      "settle_seconds": 0.3},
            "enhance": {"steps": 2},
        },
    )  # fmt: skip
    photo = tmp_path / "laptop" / "holiday.jpg"
    photo.parent.mkdir()
    photo.write_bytes(jpeg_bytes(480, 480, 5))
    good = ["-U", f"{user}%{PASSWORD}"]
    smbd = [str(SMBD), "--foreground", "--no-process-group", "--debug-stdout", "-s", str(conf)]
    worker = [sys.executable, "-m", "instaflyd", "--config", str(worker_config), "worker"]
    # smbd in a session of its own: stopping, it signals its whole process group, not ours.
    with (
        running(smbd, tmp_path / "smbd.log", start_new_session=True),
        running(worker, tmp_path / "worker.log", env=cli_env(), cwd=REPO),
    ):
        wait_until(lambda: smbclient(port, "-c", "ls", auth=good).returncode == 0, 30, "smbd")
        # Never a guest, never a wrong password.
        guest = smbclient(port, "-N", "-c", "ls", auth=[])
        assert guest.returncode != 0
        assert "NT_STATUS_ACCESS_DENIED" in guest.stdout + guest.stderr or (
            "NT_STATUS_LOGON_FAILURE" in guest.stdout + guest.stderr
        )
        wrong = smbclient(port, "-c", "ls", auth=["-U", f"{user}%wrong"])
        assert wrong.returncode != 0 and "NT_STATUS_LOGON_FAILURE" in wrong.stdout + wrong.stderr

        listing = [
            line.split()[0]
            for line in smbclient(port, "-c", "ls", auth=good).stdout.splitlines()
            if line.strip()
        ]
        assert {"drop", "enhanced"} <= set(listing)  # one share, the two folders
        put = smbclient(port, "-c", f"cd drop; lcd {photo.parent}; put holiday.jpg", auth=good)
        assert put.returncode == 0, put.stdout + put.stderr
        assert (share / "drop" / "holiday.jpg").read_bytes() == photo.read_bytes()

        def enhanced_listed() -> bool:
            out = smbclient(port, "-c", "cd enhanced; ls", auth=good).stdout
            return "holiday.instafly.jpg" in out and "holiday.instafly.json" in out

        wait_until(enhanced_listed, 180, "the enhanced photo in the share", interval=1)
        back = tmp_path / "back"
        back.mkdir()
        got = smbclient(port, "-c", f"cd enhanced; lcd {back}; get holiday.instafly.jpg", auth=good)
        assert got.returncode == 0, got.stdout + got.stderr
    received = back / "holiday.instafly.jpg"
    assert received.read_bytes() == (share / "enhanced" / "holiday.instafly.jpg").read_bytes()
    with Image.open(received) as image:
        assert (image.format, image.size) == ("JPEG", (480, 480))
