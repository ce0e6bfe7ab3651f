"""A photo dropped again under another name: its own result, under its own name.

The queue enhances each content once, so a copy of a photo already queued (`IMG_0001 copy.jpg`,
the same picture sent from two phones) gets no job of its own. So that nobody waits for a result
that never comes, the copy gets, in the output folder under its own name:

- the enhanced photo, copied from the first one's result, when that is done, and
- always a note beside it, the sidecar record with status "duplicate" (`jobs.outputs.Duplicate`:
  `same_as`, `job`, `state`, `note`, and `output` with the scores when the result was copied),
  that says which photo it matched and where that one's result is (or will be).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from instaflyd.jobs.outputs import (
    SUFFIX,
    Duplicate,
    Sidecar,
    UnreadableSidecar,
    output_paths,
    read_sidecar,
    write_sidecar,
)
from instaflyd.store import Database
from instaflyd.store.jobs import job_for_content

log = logging.getLogger("instafly.watch.duplicates")


def note_duplicate(db: Database, path: Path, output_dir: Path) -> Path | None:
    """Give the copy `path` its result (or a sidecar naming the photo it matches); returns the
    sidecar written, or None when `path` is gone or matches no job."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    original = job_for_content(db.conn, digest.hexdigest())
    if original is None or Path(original.input_path) == path:
        return None
    same_as = Path(original.input_path).name
    noted = output_dir / f"{path.stem}{SUFFIX}.json"
    if _matches(noted, path.name, same_as):  # noted before (a scan after a restart)
        return noted
    output = Path(original.output_path) if original.output_path else None
    done = original.state == "done" and output is not None and output.is_file()
    output_dir.mkdir(parents=True, exist_ok=True)
    photo, sidecar = output_paths(output_dir, path.stem)
    if done and output is not None:
        shutil.copyfile(output, photo)  # the same enhanced photo, under this photo's name
        note = Duplicate(
            same_as,
            original.id,
            original.state,
            f"The same photo as {same_as}, enhanced once: this is its result.",
            output=photo.name,
            score_before=original.score_before,
            score_after=original.score_after,
        )
    else:
        note = Duplicate(
            same_as,
            original.id,
            original.state,
            f"The same photo as {same_as}, which is enhanced once: its result will be named "
            f"after {same_as} in this folder.",
        )
    write_sidecar(sidecar, Sidecar("duplicate", path.name, duplicate=note))
    log.info("%s: the same photo as %s; its result noted in %s", path, same_as, sidecar.name)
    return sidecar


def _matches(sidecar: Path, name: str, same_as: str) -> bool:
    try:
        record = read_sidecar(sidecar)
    except (OSError, UnreadableSidecar):
        return False
    duplicate = record.duplicate
    return record.input == name and duplicate is not None and duplicate.same_as == same_as
