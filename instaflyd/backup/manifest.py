"""The backup file's format: member names and the manifest that comes first.

Members, in this order:

- `manifest.json`: `BackupManifest` as JSON (format, version, schema version, created, counts);
- `instafly.db`: the database, a single file (no -wal);
- `config/instafly.yaml` (and `config/share-password` beside it), when the config came from a file;
- `data/<path>`: files of the data folder, by their path in it (images/ab/abcd....jpg, ...).

That is a self-contained backup (format 1: `instaflyd backup FILE`, the page's download). A
daily backup (format 2) holds the same first members, but instead of `data/<path>` members it
holds `pieces.jsonl.gz`, the list of those files with their content hash; the files themselves
are shared by all the daily backups in `<backup.dir>/files/` (`pieces`). Its manifest says how
many (`pieces`) and how many bytes it added to that folder (`added_bytes`).

A reader recognises a backup by the manifest's own `format` field and refuses one written in a
newer format or at a newer schema than it knows, rather than guessing.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from instaflyd.store.migrations import SCHEMA_VERSION
from instaflyd.store.snapshot import StoreCounts

FORMAT = "instafly-backup"
SELF_CONTAINED_VERSION = 1  # every file inside: what `instaflyd backup FILE` and the page give
FORMAT_VERSION = 2  # the newest this reads: a daily backup, its data files shared in files/
MANIFEST_MEMBER = "manifest.json"
DATABASE_MEMBER = "instafly.db"
CONFIG_PREFIX = "config/"
DATA_PREFIX = "data/"
PIECES_MEMBER = "pieces.jsonl.gz"
MAX_MANIFEST_BYTES = 1_000_000


class BackupError(Exception):
    """A backup cannot be made, read or restored; the message says why and what to do."""


@dataclass(frozen=True)
class BackupManifest:
    """What a backup file holds, written first in the file."""

    format: str
    format_version: int
    instafly_version: str
    schema_version: int
    created: float  # Unix time
    counts: StoreCounts
    files: int  # data folder files (images, models, secrets)
    file_bytes: int
    database_bytes: int
    config_files: int
    pieces: int = 0  # data files kept in the shared files/ folder (0: all inside this file)
    added_bytes: int = 0  # what this backup added to that folder (files new since the last)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        data = self.as_dict()
        if not self.pieces:  # a self-contained file reads as format 1 in the release before
            del data["pieces"], data["added_bytes"]
        return json.dumps(data, indent=2, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> BackupManifest:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                raise BackupError(f"{where}: not an Instafly backup (no {FORMAT} manifest)")
            if int(raw["format_version"]) > FORMAT_VERSION:
                raise BackupError(
                    f"{where}: written in backup format {raw['format_version']}, newer than this "
                    f"Instafly reads ({FORMAT_VERSION}); upgrade Instafly first"
                )
            counts = StoreCounts(**raw["counts"])
            manifest = cls(**{**raw, "counts": counts})
        except BackupError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{where}: the backup's manifest is not readable: {exc}") from None
        if manifest.schema_version > SCHEMA_VERSION:
            raise BackupError(
                f"{where}: the backup's database is at schema version {manifest.schema_version},"
                f" newer than this Instafly ({SCHEMA_VERSION}); upgrade Instafly first"
            )
        return manifest


def read_manifest(path: Path) -> BackupManifest:
    """The manifest of the backup file `path` (only its first member is read)."""
    try:
        with tarfile.open(path, "r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_MEMBER or not first.isfile():
                raise BackupError(
                    f"{path}: not an Instafly backup (it does not start with a manifest)"
                )
            if first.size > MAX_MANIFEST_BYTES:
                raise BackupError(f"{path}: the backup's manifest is too large to be one")
            handle = tar.extractfile(first)
            assert handle is not None
            return BackupManifest.from_json(handle.read(), str(path))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{path}: cannot read the backup file: {exc}") from None
