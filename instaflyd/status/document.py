"""The status document: everything the page, /api/status, /metrics, systemd and `stats` show.

One dataclass per section, built in one place (`status.collect`), so a renamed field is a type
error in every reader instead of a missing key at the end of the line. `as_dict()` is the JSON
of /api/status and `stats --json`; the template reads the same objects by attribute. To add a
section: a dataclass here, a field on `StatusDocument`, its builder in `collect.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from instaflyd.capture.writer_state import WriterState
from instaflyd.jobs.view import JobView
from instaflyd.policy.training import TrainingPlan
from instaflyd.repairs import Problem
from instaflyd.status.share import ShareNames
from instaflyd.store.formats import UnreadFormat
from instaflyd.store.jobs import EnhancedTotals, JobCounts
from instaflyd.store.learned import Lessons
from instaflyd.store.posts import WaitingAccount
from instaflyd.store.versions import TrainingOutcome
from instaflyd.weights.status import WeightsStatus

DaemonState = Literal["starting", "running", "stopping", "standalone"]


@dataclass(frozen=True)
class InstaflySection:
    version: str
    state: DaemonState  # standalone: a page or `stats` without the daemon
    time: float  # when this document was built (Unix time)
    data_dir: str


@dataclass(frozen=True)
class ComponentStatus:
    """A supervised child process (proxy, worker)."""

    state: str  # starting | running | backoff | degraded | stopping | stopped
    pid: int | None
    restarts: int  # since the daemon started
    started_at: float | None
    last_exit: int | None
    last_exit_at: float | None
    last_error: str | None
    next_start_in: float | None  # seconds until the next start attempt


@dataclass(frozen=True)
class TrainerStatus:
    """The trainer, started by the scheduler only when training is due."""

    state: Literal["running", "idle", "stopped"]
    pid: int | None
    runs: int
    failures: int
    last_exit: int | None
    last_exit_at: float | None
    last_error: str | None
    last_check: str | None  # the scheduler's last answer to "is training due?"
    next_check_in: float | None


@dataclass(frozen=True)
class ProxySection:
    mode: str
    listen_host: str
    listen_port: int
    address: str  # host:port as a phone types it


@dataclass(frozen=True)
class Totals:
    flows: int
    posts: int
    accounts: int
    images: int
    labelled: int


@dataclass(frozen=True)
class TlsFailureLine:
    host: str
    count: int
    last_seen: float
    last_error: str | None


@dataclass(frozen=True)
class EventLine:
    ts: float
    component: str
    level: str
    kind: str
    message: str


@dataclass(frozen=True)
class RecentPost:
    id: str  # Instagram's media id
    username: str | None
    like_count: int
    follower_count: int
    like_rate: float
    image: str  # the thumbnail's URL


@dataclass(frozen=True)
class CaptureSection:
    proxy: ProxySection
    totals: Totals
    counters: dict[str, int]
    last_capture: float | None
    tls_failures: list[TlsFailureLine]
    tls_note: str
    accounts_to_visit: list[WaitingAccount]  # profiles whose posts wait for a follower count
    unread_formats: list[UnreadFormat]  # documents with posts the parsers could not read
    recent_errors: list[EventLine]
    recent_posts: list[RecentPost]
    # The capture writer's retry queue while the store refuses writes (None: no writer running).
    store_retry: WriterState | None = None


@dataclass(frozen=True)
class TrainingProgress:
    running: bool
    epoch: int | None
    epochs: int | None
    progress: float | None  # share of the epochs done, while running
    loss: float | None
    started: float | None


@dataclass(frozen=True)
class LastRun:
    state: str
    finished: float | None
    version: int | None
    message: str | None
    metrics: dict[str, Any] | None


@dataclass(frozen=True)
class TrainingGoal:
    """How far the store is from the next training: "43 of 50 labelled posts, from 3 of 4
    accounts" before the first model; new labelled posts after it."""

    first_model: bool
    posts: int
    posts_goal: int
    owners: int
    owners_goal: int
    text: str


@dataclass(frozen=True)
class ModelSection:
    version: int | None  # the current model; None before the first
    trained_at: float | None
    samples: int
    val_srcc: float | None
    val_pairwise_accuracy: float | None
    metrics: dict[str, Any]
    training: TrainingProgress
    last_run: LastRun | None
    next_training: TrainingPlan  # when the next run is due, the back-off, the CPU budget
    goal: TrainingGoal
    last_outcome: TrainingOutcome | None  # the last finished run, promoted or not
    weights: WeightsStatus
    input_size: int
    learned: Lessons | None = None  # what the current model learned (store.learned)


@dataclass(frozen=True)
class DropFolderSection:
    drop_dir: str
    output_dir: str
    jobs: JobCounts  # every job state with its count
    recent: list[JobView]  # the jobs that changed last
    enhanced: EnhancedTotals  # photos enhanced so far and their summed score gain
    share: ShareNames | None = None  # the Samba share holding both folders, where set up


@dataclass(frozen=True)
class CaSection:
    available: bool
    pem: str
    cer: str
    sha256: str | None  # "AB:CD:..." as phones show it


@dataclass(frozen=True)
class SetupSection:
    """What a phone needs: where to point its proxy, and the CA certificate to trust."""

    lan_address: str
    proxy_port: int
    proxy_mode: str
    setup_url: str
    ca: CaSection
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BackupSection:
    """The daily backups in `backup.dir`: the latest is offered for download on the page."""

    folder: str
    interval_hours: float
    keep: int
    backups: int  # readable backups in the folder
    latest_name: str | None = None
    latest_created: float | None = None  # Unix time
    latest_bytes: int | None = None  # the self-contained file the page's download gives
    latest_posts: int | None = None
    latest_added_bytes: int | None = None  # new photos it added to the folder (the rest shared)


@dataclass(frozen=True)
class DeviceLine:
    """A device the proxy has seen: a phone's WireGuard tunnel, or a Wi-Fi proxy client."""

    key: str  # wg:<id> or ip:<address>
    name: str  # the household's name, or the address it was seen from
    named: bool  # the household named it (a WireGuard phone always is)
    kind: Literal["wireguard", "proxy"]
    last_seen: float
    posts_this_week: int  # posts captured from it in the last 7 days
    trusts_box: bool  # it completed a handshake with the box's certificate
    tls_not_trusted: int  # handshakes it refused before trusting the certificate
    tls_pinned: int  # handshakes an app refused although the phone trusts it
    tls_last_host: str | None
    tls_last_at: float | None
    advice: str | None  # what to do about its failures, in the household's words
    removed: bool  # a WireGuard phone that was removed


@dataclass(frozen=True)
class WireGuardSection:
    enabled: bool
    first_port: int  # phone n listens on first_port + n
    phones: int  # set up now
    max_phones: int


@dataclass(frozen=True)
class DevicesSection:
    wireguard: WireGuardSection
    seen: list[DeviceLine]  # most recently seen first

    @classmethod
    def empty(cls) -> DevicesSection:
        return cls(WireGuardSection(False, 0, 0, 0), [])


@dataclass(frozen=True)
class RepairsSection:
    """What is wrong now and what to do about it (`instaflyd.repairs`), errors first."""

    problems: list[Problem]
    errors: int  # problems of severity "error": /healthz is not ok while there are any
    warnings: int


@dataclass(frozen=True)
class StatusDocument:
    instafly: InstaflySection
    components: dict[str, ComponentStatus | TrainerStatus]
    capture: CaptureSection
    model: ModelSection
    drop_folder: DropFolderSection
    setup: SetupSection
    repairs: RepairsSection
    devices: DevicesSection = field(default_factory=DevicesSection.empty)
    backup: BackupSection = field(default_factory=lambda: BackupSection("", 0, 0, 0))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
