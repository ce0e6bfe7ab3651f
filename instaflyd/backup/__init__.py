"""Backups of the whole appliance in one file, and putting one back (no TensorFlow, no mitmproxy).

A backup is an uncompressed tar file (photos are JPEGs already) that starts with
`manifest.json`; then the database copied with SQLite's online backup API while the daemon runs,
the user's config file, and the data folder's files: the captured images, the promoted model
versions, the proxy's CA and the page's password and secrets. Caches (the feature cache) and
models that were never promoted are left out. See `manifest` for the format.

- `make_backup(config, target)`: write a backup file (atomically) and return its manifest.
- `restore(config, file)`: put a backup back onto a fresh install.
- `restore_database(config, backup, target_db)`: only the database, for a store found damaged.
- `latest_backup(config)`: the newest readable backup in the daily folder (`backup.dir`).
- `scheduled_backup(config)`: the daily backup, named by time, with the oldest ones removed; the
  daily backups share their data files (`pieces`: each photo kept once in `backup.dir/files/`).
- `SelfContained(daily)` / `export_backup(daily, target)`: one file with everything in it, made
  from a daily backup (the page's download; `export`).
"""

from instaflyd.backup.archive import make_backup
from instaflyd.backup.export import SelfContained, export_backup
from instaflyd.backup.manifest import BackupError, BackupManifest, read_manifest
from instaflyd.backup.restore import RestoreResult, restore, restore_database
from instaflyd.backup.rotation import latest_backup, list_backups, scheduled_backup

__all__ = [
    "BackupError",
    "BackupManifest",
    "RestoreResult",
    "SelfContained",
    "export_backup",
    "latest_backup",
    "list_backups",
    "make_backup",
    "read_manifest",
    "restore",
    "restore_database",
    "scheduled_backup",
]
