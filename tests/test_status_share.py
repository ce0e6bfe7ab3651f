"""The shared folder's names for the page, from the Samba config install.sh --share writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import REPO

from instaflyd.status.share import ShareNames, samba_share


def write_share(tmp_path: Path, folder: Path) -> Path:
    """The config instafly-share.sh really writes for `folder`."""
    conf = tmp_path / "instafly.conf"
    text = subprocess.run(
        ["sh", str(REPO / "systemd" / "instafly-share.sh"), str(folder), "instafly"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    conf.write_text(text)
    return conf


def test_the_folders_in_the_share_are_named_as_the_share_shows_them(tmp_path: Path) -> None:
    srv = tmp_path / "srv" / "instafly"
    conf = write_share(tmp_path, srv)
    assert samba_share(srv / "drop", srv / "enhanced", conf) == ShareNames(
        "Instafly", "drop", "enhanced"
    )


def test_folders_outside_the_share_or_no_share_give_no_names(tmp_path: Path) -> None:
    srv = tmp_path / "srv" / "instafly"
    conf = write_share(tmp_path, srv)
    assert samba_share(tmp_path / "elsewhere" / "drop", srv / "enhanced", conf) is None
    assert samba_share(srv / "drop", srv / "enhanced", tmp_path / "missing.conf") is None
    conf.write_text("[broken\npath = ")
    assert samba_share(srv / "drop", srv / "enhanced", conf) is None
