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
from instaflyd.status.image_files import CHANGED, TITLE, image_files_problem
from instaflyd.store import Database, ImageFiles
from instaflyd.store.images import ImageFilesCheck, check_labelled_image_files

log = logging.getLogger("instafly.daemon")

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
        problem = image_files_problem(check)
        if problem is None:
            repairs.resolve(CHANGED)
            return check
        log.warning("%s", problem[0])
        repairs.report(CHANGED, "warning", *problem, title=TITLE)
        return check
