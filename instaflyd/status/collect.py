"""Builds the status document (`document.py`) from the store, the config and the daemon.

The one place that knows where each number comes from: the page, /api/status, /metrics, the
systemd STATUS line and `stats` all read what `collect_status` returns (in the daemon, the latest
snapshot of `StatusEmitter`). Reads only; the SQL is in `instaflyd.store`.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from typing import Protocol

from instaflyd import __version__
from instaflyd.backup import list_backups
from instaflyd.capture.ca_files import ca_fingerprint
from instaflyd.capture.writer_state import WAITING, WAITING_TITLE, read_state, waiting_problem
from instaflyd.config import Config
from instaflyd.jobs.view import job_view
from instaflyd.network import is_loopback, lan_address
from instaflyd.policy.training import TrainingPlan, training_plan
from instaflyd.repairs import Problem, RepairsRegistry
from instaflyd.status.document import (
    BackupSection,
    CaptureSection,
    CaSection,
    ComponentStatus,
    DaemonState,
    DeviceLine,
    DevicesSection,
    DropFolderSection,
    EventLine,
    InstaflySection,
    LastRun,
    ModelSection,
    ProxySection,
    RecentPost,
    RepairsSection,
    SetupSection,
    StatusDocument,
    TlsFailureLine,
    Totals,
    TrainerStatus,
    TrainingGoal,
    TrainingProgress,
    WireGuardSection,
)
from instaflyd.status.image_files import CHANGED as IMAGES_CHANGED
from instaflyd.status.image_files import TITLE as IMAGES_TITLE
from instaflyd.status.image_files import image_files_problem
from instaflyd.status.share import samba_share
from instaflyd.status.storage import check_storage
from instaflyd.store.devices import SeenDevice, seen_devices, wireguard_devices
from instaflyd.store.events import counters, recent_events
from instaflyd.store.formats import unread_formats
from instaflyd.store.images import ImageFiles, check_labelled_image_files
from instaflyd.store.jobs import enhanced_totals, jobs_by_state, recently_changed_jobs
from instaflyd.store.learned import lessons
from instaflyd.store.posts import accounts_to_visit
from instaflyd.store.stats import count, labelled_count, last_capture_time, recent_labelled_posts
from instaflyd.store.tls import tls_failures
from instaflyd.store.versions import (
    TrainingRun,
    current_model_version,
    in_progress,
    last_training_outcome,
    latest_training_run,
)
from instaflyd.weights.status import weights_status

TLS_NOTE = (
    "Connections a phone refused: either it does not trust the box's certificate yet (install "
    "and trust it: see Set up a phone), or an app pins its certificates (the Instagram app "
    "does: use instagram.com in the phone's browser instead). The devices list tells which."
)
DEVICES_SHOWN = 30
WEEK = 7 * 86400
NOT_TRUSTED_ADVICE = (
    "Not trusted yet: this phone refused the box's certificate {count}. Install the certificate "
    "and turn on full trust for it (Set up a phone, step 2), then reload the set-up page."
)
PINNED_ADVICE = (
    "An app refused the box {count} (last: {host}) although this phone trusts the certificate: "
    "it pins its certificates, as the Instagram app does. Use instagram.com in the phone's "
    "browser; that is captured."
)
RECENT_POSTS = 6
RECENT_JOBS = 8
RECENT_ERRORS = 10
TLS_HOSTS = 20
UNREAD_FORMATS = 20
ACCOUNTS_TO_VISIT = 5


class DaemonView(Protocol):
    """What the page needs from the running daemon (absent when the app runs on its own)."""

    @property
    def state(self) -> DaemonState: ...  # starting | running | stopping

    def components(self) -> dict[str, ComponentStatus | TrainerStatus]: ...

    def heartbeat_age(self) -> float: ...  # seconds since the supervisor's loop last ran

    def request_training(self) -> tuple[bool, str]: ...

    def latest_status(self) -> StatusDocument | None: ...  # the emitter's snapshot, if any

    def refresh_status(self) -> None: ...  # a new snapshot now, after an action changed things

    def problems(self) -> list[Problem]: ...  # the repairs list (`instaflyd.repairs`), now


def collect_status(
    config: Config, conn: sqlite3.Connection, daemon: DaemonView | None = None
) -> StatusDocument:
    return StatusDocument(
        instafly=instafly_section(config, daemon),
        components=daemon.components() if daemon else {},
        capture=capture_section(config, conn),
        model=model_section(config, conn),
        drop_folder=drop_folder_section(config, conn),
        setup=setup_section(config),
        backup=backup_section(config),
        repairs=repairs_section(daemon.problems() if daemon else standalone_problems(config, conn)),
        devices=devices_section(config, conn),
    )


def with_live_daemon(
    document: StatusDocument, config: Config, daemon: DaemonView
) -> StatusDocument:
    """A snapshot with the daemon's own state, components and problems as they are now (all
    cheap: no store)."""
    return dataclasses.replace(
        document,
        instafly=instafly_section(config, daemon),
        components=daemon.components(),
        repairs=repairs_section(daemon.problems()),
    )


def backup_section(config: Config) -> BackupSection:
    """The backup folder's newest readable backup (its manifest only: a few kilobytes read)."""
    backups = list_backups(config)
    latest = backups[0] if backups else None
    return BackupSection(
        folder=str(config.backup.dir),
        interval_hours=config.backup.interval_hours,
        keep=config.backup.keep,
        backups=len(backups),
        latest_name=latest.path.name if latest else None,
        latest_created=latest.manifest.created if latest else None,
        latest_bytes=latest.download_bytes if latest else None,
        latest_posts=latest.manifest.counts.posts if latest else None,
        latest_added_bytes=(
            latest.bytes + latest.manifest.added_bytes
            if latest and latest.manifest.pieces
            else None
        ),
    )


def repairs_section(problems: list[Problem]) -> RepairsSection:
    errors = sum(1 for p in problems if p.severity == "error")
    return RepairsSection(problems=problems, errors=errors, warnings=len(problems) - errors)


def standalone_problems(config: Config, conn: sqlite3.Connection | None = None) -> list[Problem]:
    """Without the daemon (`stats`, a page on its own): what can be checked right now."""
    registry = RepairsRegistry()
    check_storage(config, registry)
    if conn is not None:  # one stat per labelled post's image: the daemon does it every 6 h
        images = check_labelled_image_files(conn, ImageFiles(config.images_dir))
        if (changed := image_files_problem(images)) is not None:
            registry.report(IMAGES_CHANGED, "warning", *changed, title=IMAGES_TITLE)
    writer = read_state(config.runtime_dir)
    if writer is not None and (problem := waiting_problem(writer)) is not None:
        registry.report(WAITING, "error", *problem, title=WAITING_TITLE, source="proxy")
    return registry.problems()


def instafly_section(config: Config, daemon: DaemonView | None) -> InstaflySection:
    return InstaflySection(
        version=__version__,
        state=daemon.state if daemon else "standalone",
        time=time.time(),
        data_dir=str(config.data_dir),
    )


def capture_section(config: Config, conn: sqlite3.Connection) -> CaptureSection:
    counts = counters(conn)
    proxy = config.proxy
    return CaptureSection(
        proxy=ProxySection(
            mode=proxy.mode,
            listen_host=proxy.listen_host,
            listen_port=proxy.listen_port,
            address=f"{lan_address(proxy.listen_host)}:{proxy.listen_port}",
        ),
        totals=Totals(
            flows=counts.get("flows", 0),
            posts=count(conn, "posts"),
            accounts=count(conn, "accounts"),
            images=count(conn, "images"),
            labelled=labelled_count(conn),
        ),
        counters=counts,
        last_capture=last_capture_time(conn),
        tls_failures=[
            TlsFailureLine(row.host, row.count, row.last_seen, row.last_error)
            for row in tls_failures(conn, limit=TLS_HOSTS)
        ],
        tls_note=TLS_NOTE,
        accounts_to_visit=accounts_to_visit(conn, ACCOUNTS_TO_VISIT),
        unread_formats=unread_formats(conn, UNREAD_FORMATS),
        recent_errors=[
            EventLine(row.ts, row.component, row.level, row.kind, row.message)
            for row in recent_events(conn, limit=RECENT_ERRORS, min_level="warning")
        ],
        recent_posts=[
            RecentPost(
                id=row.id,
                username=row.username,
                like_count=row.like_count,
                follower_count=row.follower_count,
                like_rate=row.like_rate,
                image=f"/images/{row.image_sha256}",
            )
            for row in recent_labelled_posts(conn, RECENT_POSTS)
        ],
        store_retry=read_state(config.runtime_dir),
    )


def model_section(config: Config, conn: sqlite3.Connection) -> ModelSection:
    current = current_model_version(conn)
    run = latest_training_run(conn)
    running = in_progress(run)
    weights = weights_status(config)
    upcoming = training_plan(config, conn, weights_ok=weights.ok, weights_message=weights.message)
    return ModelSection(
        version=current.version if current else None,
        trained_at=current.created if current else None,
        samples=current.samples if current else 0,
        val_srcc=current.val_srcc if current else None,
        val_pairwise_accuracy=current.val_pairwise_accuracy if current else None,
        metrics=current.metrics if current else {},
        training=TrainingProgress(
            running=running,
            epoch=run.epoch if run else None,
            epochs=run.epochs if run else None,
            progress=_progress(run) if run and running else None,
            loss=run.loss if run else None,
            started=run.started if run else None,
        ),
        last_run=LastRun(
            state=run.state,
            finished=run.finished,
            version=run.version,
            message=run.message,
            metrics=run.metrics,
        )
        if run
        else None,
        next_training=upcoming,
        goal=training_goal(config, upcoming),
        last_outcome=last_training_outcome(conn),
        weights=weights,
        input_size=config.model.input_size,
        learned=lessons(conn, current.version) if current else None,
    )


def training_goal(config: Config, upcoming: TrainingPlan) -> TrainingGoal:
    train = config.train
    first = upcoming.current_version is None
    goal = upcoming.posts_goal
    posts = upcoming.new_since_last_run
    what = "labelled posts" if first else "new labelled posts"
    text = f"{posts:,} of {goal:,} {what}" if posts < goal else f"{posts:,} {what}"
    if first:
        owners = upcoming.owners
        text += (
            f", from {owners:,} of {train.min_owners:,} accounts"
            if owners < train.min_owners
            else f", from {owners:,} accounts"
        )
    return TrainingGoal(first, posts, goal, upcoming.owners, train.min_owners, text)


def drop_folder_section(config: Config, conn: sqlite3.Connection) -> DropFolderSection:
    recent = [job_view(job, config.watch) for job in recently_changed_jobs(conn, RECENT_JOBS)]
    return DropFolderSection(
        drop_dir=str(config.watch.drop_dir),
        output_dir=str(config.watch.output_dir),
        jobs=jobs_by_state(conn),
        recent=recent,
        enhanced=enhanced_totals(conn),
        share=samba_share(config.watch.drop_dir, config.watch.output_dir),
    )


def setup_section(config: Config) -> SetupSection:
    """Where phones point their proxy, and the CA certificate they must trust.

    The set-up URL is built from the box's own address, never from a request's Host header.
    """
    address = lan_address(config.proxy.listen_host)
    web_host = f"{lan_address(config.web.host)}:{config.web.port}"
    if is_loopback(web_host.rsplit(":", 1)[0]):
        web_host = f"{lan_address()}:{config.web.port}"
    fingerprint = ca_fingerprint(config.mitmproxy_dir)
    warnings = []
    if is_loopback(address):
        warnings.append(
            f"The proxy listens only on {address}, which phones cannot reach; set "
            "proxy.listen_host: 0.0.0.0 in the config."
        )
    if is_loopback(config.web.host):
        warnings.append(
            f"This page listens only on {config.web.host}, which phones cannot reach, so the QR "
            "code and link below will not open on a phone; set web.host: 0.0.0.0 in the config."
        )
    return SetupSection(
        lan_address=address,
        proxy_port=config.proxy.listen_port,
        proxy_mode=config.proxy.mode,
        setup_url=f"http://{web_host}/setup",
        ca=CaSection(
            available=fingerprint is not None,
            pem="/ca/instafly-ca.pem",
            cer="/ca/instafly-ca.cer",
            sha256=fingerprint,
        ),
        warnings=warnings,
    )


def devices_section(
    config: Config, conn: sqlite3.Connection, now: float | None = None
) -> DevicesSection:
    now = time.time() if now is None else now
    wireguard = config.wireguard
    return DevicesSection(
        wireguard=WireGuardSection(
            enabled=wireguard.enabled,
            first_port=wireguard.port,
            phones=len(wireguard_devices(conn)),
            max_phones=wireguard.max_devices,
        ),
        seen=[_device_line(d) for d in seen_devices(conn, now - WEEK, DEVICES_SHOWN)],
    )


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count:,} times"


def _device_line(device: SeenDevice) -> DeviceLine:
    advice = None
    trusted = device.trusted_at is not None
    if device.tls_pinned and trusted:
        advice = PINNED_ADVICE.format(
            count=_times(device.tls_pinned), host=device.tls_last_host or "an Instagram host"
        )
    elif device.tls_untrusted and not trusted:
        advice = NOT_TRUSTED_ADVICE.format(count=_times(device.tls_untrusted))
    wireguard = device.wireguard_id is not None
    return DeviceLine(
        key=device.key,
        name=device.name
        or (f"Phone {device.wireguard_id}" if wireguard else device.address or "?"),
        named=bool(device.name),
        kind="wireguard" if wireguard else "proxy",
        last_seen=device.last_seen,
        posts_this_week=device.posts_since,
        trusts_box=trusted,
        tls_not_trusted=device.tls_untrusted,
        tls_pinned=device.tls_pinned,
        tls_last_host=device.tls_last_host,
        tls_last_at=device.tls_last_at,
        advice=advice,
        removed=device.revoked,
    )


def _progress(run: TrainingRun) -> float:
    if not run.epochs:
        return 0.0
    return max(0.0, min(1.0, (run.epoch or 0) / run.epochs))
