"""Which files in the drop folder are photos to enhance, and which to leave alone.

Browsers, office programs and sync tools write a file under a temporary name and rename it when
it is complete; Instafly waits for the rename. Hidden files (`.DS_Store`, macOS `._` resource
forks, Syncthing's `.syncthing.*.tmp`), desktop litter and Instafly's own outputs are never
enhanced, and nothing inside the output folder is, when that folder lies inside the drop folder.
"""

from __future__ import annotations

import re
from pathlib import Path

TEMP_SUFFIXES = (
    ".part",  # Firefox, wget
    ".partial",
    ".crdownload",  # Chrome, Edge
    ".download",  # Safari
    ".tmp",  # Syncthing on Windows, many copy tools
    ".temp",
    ".!sync",  # Resilio Sync
    ".swp",
)
TEMP_PREFIXES = ("~$", "~syncthing~")  # Microsoft Office lock files, Syncthing on Windows
DESKTOP_FILES = frozenset({"thumbs.db", "desktop.ini"})
# <stem>.instafly.jpg / .json and the numbered variants written on a name clash.
OUTPUT_NAME = re.compile(r"\.instafly(?:[-_. ]?\(?\d+\)?)?\.(?:jpe?g|json)$", re.IGNORECASE)


class DropRules:
    """The ignore rules of one drop folder, its output folder and `watch.recursive`."""

    def __init__(self, drop_dir: Path, output_dir: Path, recursive: bool) -> None:
        self.drop_dir = drop_dir
        self.recursive = recursive
        nested = output_dir != drop_dir and output_dir.is_relative_to(drop_dir)
        self.nested_output_dir = output_dir if nested else None

    def ignore_reason(self, path: Path) -> str | None:
        """Why the file `path` is not a photo to enhance; None when it is one."""
        if not path.is_relative_to(self.drop_dir) or path == self.drop_dir:
            return "outside the drop folder"
        if self.nested_output_dir and path.is_relative_to(self.nested_output_dir):
            return "inside the output folder"
        parts = path.relative_to(self.drop_dir).parts
        if any(part.startswith(".") for part in parts):
            return "hidden"
        if len(parts) > 1 and not self.recursive:
            return "in a subfolder (watch.recursive is off)"
        name = path.name.lower()
        if name.startswith(TEMP_PREFIXES) or name.endswith(TEMP_SUFFIXES):
            return "temporary name of a file still being copied"
        if OUTPUT_NAME.search(name):
            return "an Instafly output"
        if name in DESKTOP_FILES:
            return "desktop system file"
        return None

    def skips_folder(self, folder: Path) -> bool:
        """Whether nothing under `folder` can be a photo to enhance (scans do not enter it)."""
        if folder == self.drop_dir:
            return False
        if not self.recursive or not folder.is_relative_to(self.drop_dir):
            return True
        if self.nested_output_dir and folder.is_relative_to(self.nested_output_dir):
            return True
        return any(part.startswith(".") for part in folder.relative_to(self.drop_dir).parts)
