"""What a reload leaves running: every child whose part of the config the reload did not change.

A reload (SIGHUP) reads the config again and starts a new supervisor, scheduler and fetcher
with it. Each child reads only some sections of the config; a digest of those sections and of
its command line (`settings_digest`) tells whether the new file changes anything for it. The
proxy and the worker carry theirs in `ComponentSpec.settings`; the trainer, the weights fetch
and the daily backup are started by their schedulers, which let go of a running child whose
digest the new config leaves as it is (`release_if_unchanged`), for the next daemon's scheduler
to adopt. So a new page port cuts neither the phones' connections nor an hour of training.

The sections each child does not read are listed here; a section not named (a new one) counts
as read, so that a child is restarted rather than left on settings it never saw.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import ClassVar, Protocol

from instaflyd.config import Config
from instaflyd.daemon.children import ChildProcess, instaflyd_argv

# faults is the daemon's own (its lifelines and disk checks): no child reads it.
PROXY_IGNORES = frozenset({"web", "watch", "model", "train", "enhance", "backup", "faults"})
WORKER_IGNORES = frozenset({"web", "proxy", "wireguard", "train", "backup", "faults"})
# `instaflyd train` reads the model and train sections (model/, policy/).
TRAINER_IGNORES = frozenset({"web", "proxy", "wireguard", "watch", "enhance", "backup", "faults"})
# `instaflyd weights fetch` reads the model section only (weights/).
WEIGHTS_IGNORES = TRAINER_IGNORES | {"train"}
# `instaflyd backup --scheduled` reads backup and, for the space it checks, watch's folders.
BACKUP_IGNORES = frozenset({"web", "proxy", "wireguard", "model", "train", "enhance", "faults"})


def settings_digest(config: Config, argv: Sequence[str], ignores: frozenset[str]) -> str:
    """What a child is started with and reads of the config, as one digest."""
    sections = config.model_dump(mode="json", exclude=set(ignores))
    text = json.dumps([list(argv), sections], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Scheduled(Protocol):
    """A scheduler of one child at a time (the trainer, the weights fetch, the backup)."""

    COMMAND: ClassVar[tuple[str, ...]]  # the child's command, after `instaflyd`
    IGNORES: ClassVar[frozenset[str]]  # the config sections it does not read
    config: Config
    child: ChildProcess | None


def unchanged_for(scheduled: Scheduled, new: Config) -> bool:
    """Whether `new` leaves everything the scheduled child reads as it is."""

    def digest(config: Config) -> str:
        argv = instaflyd_argv(config, *scheduled.COMMAND)
        return settings_digest(config, argv, scheduled.IGNORES)

    return digest(scheduled.config) == digest(new)


def release_if_unchanged(scheduled: Scheduled, new: Config) -> ChildProcess | None:
    """The running child, let go (the scheduler's `stop()` then leaves it alone) if `new`
    changes nothing it reads; None if none runs or it must be restarted with `new`."""
    child = scheduled.child
    if child is None or child.poll() is not None or not unchanged_for(scheduled, new):
        return None
    scheduled.child = None
    return child
