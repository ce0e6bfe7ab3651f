"""The labelled posts' image files, checked at the daemon's start and every few hours.

An image file that is gone, truncated or overwritten (by a person, a tool, a failing card)
cannot stand for its post any more: training leaves the post out
(`model.labels.labelled_posts`), so the labelled count on the page would promise more than the
model gets. This check counts them and keeps a repairs card (a warning) up while there are
any, with what to do. One stat per image, on the event writer's thread.
"""

from __future__ import annotations

import logging
import time

from instaflyd import repairs
from instaflyd.store import Database, ImageFiles
from instaflyd.store.images import ImageFilesCheck, check_labelled_image_files

log = logging.getLogger("instafly.daemon")

CHANGED = "images.changed"  # the repairs list's id while some are missing or changed
CHECK_EVERY_SECONDS = 6 * 3600.0


class ImageCheck:
    def __init__(self, db: Database, files: ImageFiles, every: float = CHECK_EVERY_SECONDS) -> None:
        self.db = db
        self.files = files
        self.every = every
        self.next_check: float | None = None  # monotonic; None: at the first tick
        self.last: ImageFilesCheck | None = None

    def tick(self, now: float | None = None) -> ImageFilesCheck | None:
        now = time.monotonic() if now is None else now
        if self.next_check is not None and now < self.next_check:
            return self.last
        self.next_check = now + self.every
        check = self.last = check_labelled_image_files(self.db.conn, self.files)
        if not check.unusable:
            repairs.resolve(CHANGED)
            return check
        count = len(check.unusable)
        parts = []
        if check.changed:
            parts.append(f"{len(check.changed):,} changed on disk (truncated or overwritten)")
        if check.missing:
            parts.append(f"{len(check.missing):,} missing")
        log.warning(
            "%d of %d labelled posts' image files cannot be used: %s",
            count,
            check.checked,
            ", ".join(parts),
        )
        repairs.report(
            CHANGED,
            "warning",
            f"{count:,} of the {check.checked:,} labelled posts' photos cannot be used any more"
            f" ({', '.join(parts)}), so training leaves those posts out; the labelled count on"
            " this page still includes them.",
            "Nothing is needed for the box to work: a photo is stored again when a phone sees"
            " its post again. If the number grows by itself, the SD card or disk may be"
            " failing: replace it and restore the latest backup. Do not edit files in the"
            " data folder's images folder.",
            title="Some captured photos were changed or removed",
        )
        return check
