"""The life of a photo job, without TensorFlow: used alike by the page's uploads and the worker.

`lifecycle` holds each step (enqueue, claim, finish, interrupt, end an attempt, retry, wait for a
model), each one transaction with its event; `recovery` settles an attempt that gave no result
and recovers the jobs of a dead process; `files` reserves and removes a job's output files;
`outputs` names them and holds the sidecar record; `view` is a job as the page and the API show
it. The rows and their SQL are in `instaflyd.store.jobs`. Only the enhancement itself
(`instaflyd.watch.job`, in the enhancer process) loads the model.

The steps are offered here by name, `jobs.enqueue(...)`, `jobs.claim_next(...)`, ...
"""

from __future__ import annotations

from instaflyd.jobs.lifecycle import (
    claim_next,
    end_attempt,
    enqueue,
    enqueue_file,
    file_sha256,
    finish,
    interrupt,
    release_waiting,
    retry,
    wait_for_a_model,
)
from instaflyd.jobs.recovery import recover_dead, settle_attempt
from instaflyd.store.jobs import Job, JobState

__all__ = [
    "Job",
    "JobState",
    "claim_next",
    "end_attempt",
    "enqueue",
    "enqueue_file",
    "file_sha256",
    "finish",
    "interrupt",
    "recover_dead",
    "release_waiting",
    "retry",
    "settle_attempt",
    "wait_for_a_model",
]
