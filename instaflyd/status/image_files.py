"""The repairs card for the labelled posts' image files that are gone or changed on disk.

Shared by the daemon's check every few hours (`daemon.image_check`) and by `instaflyd stats` and
a page without the daemon (`collect.standalone_problems`), so both say it in the same words.
"""

from __future__ import annotations

from instaflyd.store.images import ImageFilesCheck

CHANGED = "images.changed"  # the repairs list's id while some are missing or changed
TITLE = "Some captured photos were changed or removed"


def image_files_problem(check: ImageFilesCheck) -> tuple[str, str] | None:
    """The card's sentence and what to do (None: every file is as it was stored)."""
    if not check.unusable:
        return None
    parts = []
    if check.changed:
        parts.append(f"{len(check.changed):,} changed on disk (truncated or overwritten)")
    if check.missing:
        parts.append(f"{len(check.missing):,} missing")
    return (
        f"{len(check.unusable):,} of the {check.checked:,} labelled posts' photos cannot be used"
        f" any more ({', '.join(parts)}), so training leaves those posts out; the labelled"
        " count on this page still includes them.",
        "Nothing is needed for the box to work: a photo is stored again when a phone sees its"
        " post again. If the number grows by itself, the SD card or disk may be failing:"
        " replace it and restore the latest backup. Do not edit files in the data folder's"
        " images folder.",
    )
