"""The shared folder's names, as a laptop or a phone sees them, when the box shares its folders.

`install.sh --system --share` writes `/etc/samba/instafly.conf` (systemd/instafly-share.sh):
the Samba share "Instafly" whose path holds the drop and results folders. When the configured
drop and output folders are in that share, the page says "the drop folder of the shared folder
Instafly" instead of a path on the box that nobody in the household can open.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

SAMBA_CONF = Path("/etc/samba/instafly.conf")
MAX_CONF_BYTES = 64 * 1024


@dataclass(frozen=True)
class ShareNames:
    name: str  # the share's name: "Instafly"
    drop: str  # the drop folder's name inside it: "drop"
    output: str  # the results folder's name inside it: "enhanced"


def samba_share(drop_dir: Path, output_dir: Path, conf: Path = SAMBA_CONF) -> ShareNames | None:
    """The share holding both folders (directly), if the Samba config names one; else None."""
    try:
        with conf.open("rb") as file:
            text = file.read(MAX_CONF_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    for name in parser.sections():
        path = parser[name].get("path")
        if not path:
            continue
        root = Path(path.strip())
        if drop_dir.parent == root and output_dir.parent == root:
            return ShareNames(name, drop_dir.name, output_dir.name)
    return None
