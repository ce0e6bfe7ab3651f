"""The files of a drop-folder job: where its outputs go, reserving them, removing what is left.

The names of a job's photo and sidecar are decided once, here, when an attempt starts: they are
recorded in the job's row before anything is written (so that a retry after a crash removes what
a dead attempt left) and handed to `enhance_file`, which writes exactly there. The output folder
mirrors the drop folder's subfolders. A photo that could not be enhanced still gets a sidecar
saying why, in the folder where its result would have been.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from instaflyd.config import WatchConfig
from instaflyd.fsutil import remove_stale_temps
from instaflyd.jobs.lifecycle import live_workers
from instaflyd.jobs.outputs import Sidecar, output_paths, write_sidecar
from instaflyd.store import Database
from instaflyd.store.jobs import Job, output_of_another_job, reserve_outputs

log = logging.getLogger("instafly.jobs")


class JobFiles:
    """The output files of jobs, for the process with pid `own_pid`."""

    def __init__(self, watch: WatchConfig, db: Database, own_pid: int) -> None:
        self.watch = watch
        self.db = db
        self.own_pid = own_pid

    def output_dir_for(self, source: Path) -> Path:
        """The output folder mirrors the drop folder's subfolders."""
        if source.parent.is_relative_to(self.watch.drop_dir):
            return self.watch.output_dir / source.parent.relative_to(self.watch.drop_dir)
        return self.watch.output_dir

    def reserve(self, job: Job) -> tuple[Path, Path]:
        """Decide the (photo, sidecar) names of this attempt and record them in the job's row."""
        source = Path(job.input_path)
        photo, sidecar = output_paths(self.output_dir_for(source), source.stem)
        with self.db.transaction() as conn:
            reserve_outputs(conn, job.id, str(photo), str(sidecar))
        return photo, sidecar

    def release(self, job: Job | None) -> None:
        """Remove the files the job's row records, and forget them: what an unfinished attempt
        reserved (and its temp files), or the sidecar of an earlier failed or rejected outcome,
        so that the next attempt writes under the same names."""
        if job is None or not (job.output_path or job.sidecar_path):
            return
        for name in filter(None, (job.output_path, job.sidecar_path)):
            if not output_of_another_job(self.db.conn, job.id, name):
                with contextlib.suppress(FileNotFoundError):
                    Path(name).unlink()
        if job.output_path:
            # Temps of a live writer are young; with no other process enhancing, none are.
            others = live_workers(self.db) - {self.own_pid}
            remove_stale_temps(Path(job.output_path).parent, 3600 if others else 0)
        with self.db.transaction() as conn:
            reserve_outputs(conn, job.id, None, None)

    def write_failure_sidecar(self, job: Job, reason: str) -> None:
        """The sidecar of a job that failed for good, recorded in its row (if the output folder
        takes it: the reason is in the store and on the page either way)."""
        source = Path(job.input_path)
        try:
            _, sidecar = output_paths(self.output_dir_for(source), source.stem)
            write_sidecar(sidecar, Sidecar("failed", str(source), reason=reason))
        except OSError as exc:
            log.warning("%s: could not write its failed sidecar: %s", source.name, exc)
            return
        with self.db.transaction() as conn:
            reserve_outputs(conn, job.id, None, str(sidecar))
