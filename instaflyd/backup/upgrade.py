"""Bring the store to this release's schema as an install or upgrade does (`instaflyd migrate`).

Opening the store migrates it anyway (every process does at its start); doing it here, from
install.sh, makes an upgrade fail at install time rather than at the service's start, and keeps
a copy of the database as it was (`instafly.db.before-upgrade`, made with SQLite's online backup
API) whenever the schema changes, so a migration that goes wrong costs nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from instaflyd.backup.manifest import BackupError
from instaflyd.config import Config
from instaflyd.store import Database, StoreError
from instaflyd.store.migrations import SCHEMA_VERSION
from instaflyd.store.snapshot import SnapshotError, copy_database_file, schema_version_of

log = logging.getLogger("instafly.backup")

KEPT_SUFFIX = ".before-upgrade"


@dataclass(frozen=True)
class UpgradeResult:
    before: int | None  # the schema version found (None: there was no database yet)
    after: int
    kept: Path | None  # the copy of the database before the migration, if it migrated


def upgrade_store(config: Config) -> UpgradeResult:
    """Migrate the store to SCHEMA_VERSION, keeping a copy of the old database first."""
    path = config.db_path
    kept = None
    try:
        before = schema_version_of(path) if path.exists() else None
        if before is not None and before < SCHEMA_VERSION:
            kept = path.with_name(path.name + KEPT_SUFFIX)
            copy_database_file(path, kept)
        with Database(path) as db:
            after = db.schema_version()
    except (SnapshotError, StoreError) as exc:
        raise BackupError(str(exc)) from None
    if before != after:
        log.info("store migrated from schema %s to %d", before, after)
    return UpgradeResult(before, after, kept)
