"""What the capture writer tells the page while the store refuses writes, outside the store.

While the disk is full or the data folder is read-only, the writer cannot record anything in
the database, so it leaves this small note in the runtime folder (`Config.runtime_dir`, memory
backed) instead: the fault, how many captured responses wait in its retry queue, how many were
lost and why. The status collector reads it (`capture.store_retry`); a note whose writer is
gone is ignored. `waiting_problem` is the repairs card it makes: the writer reports it to the
daemon, and a page without the daemon makes it from the note.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from instaflyd.fsutil import atomic_write_text
from instaflyd.processes import claim_alive
from instaflyd.store.faults import FAULT_ACTION, FAULT_TEXT

FILE_NAME = "capture-writer.json"
WAITING = "capture.waiting"  # the repairs list's id for captures the store refuses
WAITING_TITLE = "Captured posts are not being saved"


@dataclass(frozen=True)
class WriterState:
    pid: int
    updated: float  # Unix time of this note
    fault: str | None  # why the store refuses writes (store.faults.Fault); None: it takes them
    fault_since: float | None  # Unix time the fault began
    held: int  # captured responses waiting to be stored
    held_bytes: int
    max_bytes: int  # proxy.store_retry_max_bytes
    stored_after_waiting: int  # responses stored after waiting, since the writer started
    lost: dict[str, int] = field(default_factory=dict)  # fault -> responses lost for it

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())


def state_path(runtime_dir: Path) -> Path:
    return runtime_dir / FILE_NAME


def write_state(runtime_dir: Path, state: WriterState) -> None:
    """Best effort: a note that cannot be written is not worth stopping capture for."""
    with contextlib.suppress(OSError):
        runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write_text(state_path(runtime_dir), json.dumps(asdict(state)), mode=0o600)


def read_state(runtime_dir: Path) -> WriterState | None:
    """The running writer's note; None when there is none or its writer is gone."""
    try:
        data = json.loads(state_path(runtime_dir).read_text())
        state = WriterState(
            pid=int(data["pid"]),
            updated=float(data["updated"]),
            fault=None if data["fault"] is None else str(data["fault"]),
            fault_since=None if data["fault_since"] is None else float(data["fault_since"]),
            held=int(data["held"]),
            held_bytes=int(data["held_bytes"]),
            max_bytes=int(data["max_bytes"]),
            stored_after_waiting=int(data["stored_after_waiting"]),
            lost={str(k): int(v) for k, v in dict(data["lost"]).items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if state.pid != os.getpid() and not claim_alive(state.pid):
        return None
    return state


def waiting_problem(state: WriterState) -> tuple[str, str] | None:
    """The repairs card's sentence and action while the store refuses captures (None: it
    takes them)."""
    if state.fault is None and not state.held:
        return None
    fault = state.fault or "io_error"
    waiting = (
        f"{state.held} captured responses are waiting to be saved"
        if state.held
        else "Captured posts cannot be saved"
    )
    lost = (
        f" {state.lost_total} were lost because too many were waiting." if state.lost_total else ""
    )
    return f"{waiting}: {FAULT_TEXT[fault]}.{lost}", FAULT_ACTION[fault]
