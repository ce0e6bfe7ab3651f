"""A job as people see it: one record for the page's drop-folder list and `/api/photos`.

The rules of what is shown live here once: a preview of the photo sent while it is usable (not
rejected) and still in the drop folder, of the result and its download once the job is done and
the file is in the output folder, the edits the sidecar records (rounded for people, zero edits
left out), and which jobs may be retried from the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from instaflyd.config import WatchConfig
from instaflyd.fsutil import file_inside
from instaflyd.jobs.outputs import UnreadableSidecar, read_sidecar
from instaflyd.store.jobs import Job, JobState

RETRYABLE_STATES: tuple[JobState, ...] = ("failed", "rejected")


@dataclass(frozen=True)
class JobView:
    """One photo's job with the URLs the page and the API offer for it."""

    id: int
    name: str
    state: JobState
    reason: str | None
    attempts: int
    created: float
    finished: float | None
    score_before: float | None
    score_after: float | None
    score_change: float | None
    model_version: int | None
    retryable: bool
    output_name: str | None  # the enhanced photo's file name, once done
    before: str | None  # thumbnail URLs, where there is a file to show
    after: str | None
    enhanced: str | None  # the full-resolution download
    edits: dict[str, float] = field(default_factory=dict)  # only when asked for: reads a file


def job_view(job: Job, watch: WatchConfig, *, with_edits: bool = False) -> JobView:
    """`job` as shown; `with_edits` reads its sidecar for the edits that were made."""
    output = file_inside(job.output_path, [watch.output_dir]) if job.state == "done" else None
    source = file_inside(job.input_path, [watch.drop_dir]) if job.state != "rejected" else None
    return JobView(
        id=job.id,
        name=Path(job.input_path).name,
        state=job.state,
        reason=job.reason,
        attempts=job.attempts,
        created=job.created,
        finished=job.finished,
        score_before=job.score_before,
        score_after=job.score_after,
        score_change=job.score_change,
        model_version=job.model_version,
        retryable=job.state in RETRYABLE_STATES,
        output_name=output.name if output else None,
        before=f"/thumbs/job/{job.id}/before" if source else None,
        after=f"/thumbs/job/{job.id}/after" if output else None,
        enhanced=f"/api/photos/{job.id}/enhanced" if output else None,
        edits=_edits(job.sidecar_path, watch.output_dir) if output and with_edits else {},
    )


def _edits(sidecar: str | None, output_dir: Path) -> dict[str, float]:
    """The edits the sidecar records (exposure, contrast, ...), rounded for people."""
    path = file_inside(sidecar, [output_dir])
    if path is None:
        return {}
    try:
        enhancement = read_sidecar(path).enhancement
    except (OSError, UnreadableSidecar):
        return {}
    if enhancement is None:
        return {}
    rounded = {key: round(value, 3) for key, value in enhancement.params.items()}
    return {key: value for key, value in rounded.items() if value != 0}
