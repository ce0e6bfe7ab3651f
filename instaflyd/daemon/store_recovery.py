"""The store at the daemon's start, and every few hours: damaged means said, never a restart loop.

A database whose header is damaged ("file is not a database") cannot be opened at all; exiting
would only make systemd start the daemon again into the same failure. So `open_store` moves
the damaged file aside (kept, dated: `instafly.db.damaged-YYYYMMDD-HHMMSS`, for an expert), puts
the latest backup in its place where there is one (`backup.restore_database`) or starts empty,
and the page's repairs list says what happened until the daemon restarts.

Damage in the middle of the file leaves most of it readable, and an automatic restore would
throw away everything captured since the last backup; `IntegrityCheck` runs SQLite's
quick_check at start and every few hours and keeps a repairs card up while it fails, with
what to do.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from instaflyd import repairs
from instaflyd.backup.manifest import BackupError, read_manifest
from instaflyd.backup.restore import restore_database
from instaflyd.backup.rotation import latest_backup
from instaflyd.config import Config
from instaflyd.store import Database, StoreError
from instaflyd.store.events import log_event
from instaflyd.store.integrity import damage_of, move_aside, quick_check
from instaflyd.store.snapshot import SnapshotError
from instaflyd.store.stats import count

log = logging.getLogger("instafly.daemon")

REPLACED = "store.replaced"
DAMAGED = "store.damaged"
CHECK_EVERY_SECONDS = 6 * 3600.0


@dataclass(frozen=True)
class StoreRecovery:
    """What `open_store` did with a database it could not open."""

    damage: str  # SQLite's words for what was wrong
    kept_as: Path  # the damaged file, moved aside
    backup: Path | None  # the backup put in its place (None: started empty)
    backup_created: float | None  # Unix time the backup was made
    posts: int  # posts in the store now
    restore_error: str | None  # why the latest backup could not be used, if it could not

    def problem(self) -> tuple[str, str, str]:
        """The repairs card: title, sentence, what to do."""
        if self.backup is not None and self.backup_created is not None:
            when = time.strftime("%d %b %Y %H:%M", time.localtime(self.backup_created))
            outcome = (
                f"The box started again from the latest backup, of {when} ({self.posts:,} posts);"
                " what was captured after it is lost."
            )
        else:
            outcome = "The box started again with an empty database" + (
                f" (the latest backup could not be used: {self.restore_error})."
                if self.restore_error
                else " (there was no backup)."
            )
        return (
            "The database was damaged and has been replaced",
            f"The database could not be read ({self.damage}). {outcome}",
            f"Nothing to do for the box to work. The damaged file is kept as {self.kept_as.name}"
            " in the data folder, for an expert to rescue more; delete it to free the space."
            " Daily backups (backup.keep) limit what such damage can take.",
        )


def open_store(config: Config) -> tuple[Database, StoreRecovery | None]:
    """The daemon's database; a damaged one is moved aside and replaced (see the docstring).

    Any other failure to open (a read-only or full disk, a schema too new) raises as before."""
    try:
        return Database(config.db_path), None
    except StoreError as exc:
        if damage_of(exc) is None:
            raise
        damage = str(exc.__cause__ or exc)
    kept_as = move_aside(config.db_path)
    log.error("the database is damaged (%s); it is kept as %s", damage, kept_as.name)
    backup, created, restore_error = latest_backup(config), None, None
    if backup is not None:
        try:
            created = read_manifest(backup).created
            restore_database(config, backup, config.db_path)
        except (BackupError, SnapshotError, StoreError, OSError) as exc:
            log.error("the latest backup %s cannot be restored: %s", backup.name, exc)
            restore_error = str(exc)
            backup = created = None
            config.db_path.unlink(missing_ok=True)
    db = Database(config.db_path)
    posts = count(db.conn, "posts")
    recovery = StoreRecovery(damage, kept_as, backup, created, posts, restore_error)
    _title, sentence, _action = recovery.problem()
    with db.transaction() as conn:
        log_event(conn, "daemon", "error", "store_replaced", sentence, echo=True)
    return db, recovery


class IntegrityCheck:
    """SQLite's quick_check at the daemon's start and every CHECK_EVERY_SECONDS after; a
    repairs card while it finds damage."""

    def __init__(self, db: Database, every: float = CHECK_EVERY_SECONDS) -> None:
        self.db = db
        self.every = every
        self.next_check = 0.0  # monotonic; 0 = at the first tick
        self.problems: list[str] = []

    def tick(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        if now < self.next_check:
            return self.problems
        self.next_check = now + self.every
        started = time.monotonic()
        self.problems = quick_check(self.db.conn)
        seconds = time.monotonic() - started
        if not self.problems:
            log.debug("quick_check: ok in %.2f s", seconds)
            repairs.resolve(DAMAGED)
            return self.problems
        repairs.report(
            DAMAGED,
            "error",
            "The database is damaged in places, so some posts, photos or figures may be"
            f" missing or wrong here (SQLite found: {'; '.join(self.problems)[:300]}).",
            "The box keeps capturing. To repair it: open Details, download the latest backup,"
            " then stop the box and restore it (sudo systemctl stop instaflyd; instaflyd"
            " restore FILE --force; sudo systemctl start instaflyd). What was captured after"
            " that backup is lost.",
            title="The database is damaged",
        )
        return self.problems
