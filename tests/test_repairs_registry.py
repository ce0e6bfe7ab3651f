"""The repairs list: one entry per problem, reported from any process, shown with what to do.

The registry itself, a real child reporting through its output, the disk-space and read-only
checks on a real small tmpfs and a real read-only bind mount, and what the page, /healthz,
/metrics, the STATUS line and `stats --json` make of it.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support_daemon import give_password, seed_store
from support_faults import fill, read_only, small_tmpfs

from instaflyd import repairs
from instaflyd.config import Config, build_config
from instaflyd.daemon.children import ChildProcess
from instaflyd.daemon.lifelines import Lifelines
from instaflyd.daemon.run import status_line
from instaflyd.repairs import Problem, RepairsRegistry, parse_marker
from instaflyd.status.collect import collect_status
from instaflyd.status.document import ComponentStatus, StatusDocument
from instaflyd.status.storage import check_storage, human_bytes
from instaflyd.store import Database
from instaflyd.web import create_app

PASSWORD = "correct horse"


def make_config(data_dir: Path, **faults: float) -> Config:
    return build_config(
        {
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
            "web": {"password": PASSWORD},
            "faults": faults,
        },
        data_dir=data_dir,
    )


# --- the registry ---------------------------------------------------------------------------


def test_the_same_problem_twice_is_one_entry_that_counts_and_goes_when_resolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = RepairsRegistry()
    with caplog.at_level(logging.INFO, logger="instafly.repairs"):
        for _ in range(50):
            registry.report("disk.low", "warning", "Almost full.", "Delete photos.", now=100.0)
        registry.report("store.read_only", "error", "Read-only.", "Restart.", now=200.0)
        registry.report("disk.low", "error", "Full.", "Delete photos now.", now=300.0)
        registry.report("disk.low", "warning", "Almost full.", "Delete photos.", now=400.0)
        assert registry.resolve("disk.low") is not None
    assert registry.resolve("disk.low") is None  # gone: resolving again is nothing
    assert [p.id for p in registry.problems()] == ["store.read_only"]
    # One log line when a problem appears, one when its severity changes, one when it goes:
    # not one per report.
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "problem: Almost full. Delete photos."
    assert messages[1] == "problem: Read-only. Restart."
    assert messages[2] == "problem is now error: Full."
    assert messages[3] == "problem is now warning: Almost full."
    assert messages[4].startswith("resolved: Disk low (seen 52 times since ")
    assert len(messages) == 5
    with pytest.raises(ValueError):
        registry.report("x", "fatal", "", "")  # type: ignore[arg-type]


def test_errors_come_first_then_the_oldest_and_a_repeat_updates_the_entry() -> None:
    registry = RepairsRegistry()
    for _ in range(50):
        registry.report("disk.low", "warning", "Almost full.", "Delete photos.", now=100.0)
    registry.report("store.read_only", "error", "Read-only.", "Restart.", now=200.0)
    registry.report("disk.low", "error", "Full.", "Delete photos now.", now=300.0)
    assert registry.get("disk.low") == Problem(
        "disk.low", "error", "Disk low", "Full.", "Delete photos now.", since=100.0,
        last_seen=300.0, count=51, source="daemon",
    )  # fmt: skip
    assert [p.id for p in registry.problems()] == ["disk.low", "store.read_only"]
    registry.report("disk.low", "warning", "Almost full.", "Delete photos.", now=400.0)
    assert [p.id for p in registry.problems()] == ["store.read_only", "disk.low"]
    assert [p.id for p in registry.errors()] == ["store.read_only"]
    registry.report("disk.low", "warning", "Almost full.", "Delete photos.", count=80)
    assert registry.get("disk.low").count == 80  # a child's own count, batched


def test_in_the_daemon_report_goes_straight_into_the_installed_registry() -> None:
    registry = RepairsRegistry()
    repairs.install(registry)
    try:
        repairs.report("store.corrupt", "error", "Damaged.", "Restore.", title="Database damaged")
        assert registry.get("store.corrupt").title == "Database damaged"
        repairs.resolve("store.corrupt")
        assert registry.problems() == []
    finally:
        repairs.install(None)


CHILD_REPORTS = """
from instaflyd import repairs
for _ in range(100):
    repairs.report("store.read_only", "error", "The storage is read-only.", "Restart the box.")
print("an ordinary line", flush=True)
repairs.report("disk.low", "warning", "Almost full.", "Delete photos.")
repairs.resolve("disk.low")
repairs.resolve("never.raised")
repairs.resolve("never.raised")
import time; time.sleep(60)
"""


def test_a_child_reports_through_its_output_and_its_problems_go_when_it_ends() -> None:
    registry = RepairsRegistry()
    lifelines = Lifelines(registry, hang_seconds=60)
    out = io.StringIO()
    child = ChildProcess(
        "proxy", [sys.executable, "-c", CHILD_REPORTS], relay_to=out, listener=lifelines
    )
    try:
        problem = _wait_for(lambda: registry.get("store.read_only"))
        assert (problem.severity, problem.sentence, problem.action, problem.source) == (
            "error", "The storage is read-only.", "Restart the box.", "proxy",
        )  # fmt: skip
        _wait_for(lambda: "an ordinary line" in out.getvalue())
        _wait_for(lambda: registry.get("disk.low") is None and len(child.lines) >= 1)
    finally:
        child.kill()
        child.wait(5)
    child.last_line()  # the relay has read everything
    # 100 reports of one problem were one marker line; none of them reached the log.
    assert out.getvalue() == "proxy | an ordinary line\n"
    assert list(child.lines) == ["an ordinary line"]
    assert [p.id for p in registry.problems()] == ["store.read_only"]
    lifelines.ended("proxy")
    assert registry.problems() == []


def test_marker_lines_that_are_not_well_formed_are_ignored() -> None:
    marker = repairs.MARKER
    assert parse_marker("an ordinary line") is None
    assert parse_marker(marker + "not json") is None
    assert parse_marker(marker + '{"op": "report", "id": "x", "pid": 1}') is None  # no severity
    assert parse_marker(marker + '{"op": "report", "id": "x", "pid": 1, "severity": "x"}') is None
    assert parse_marker(marker + '{"op": "drop", "id": "x", "pid": 1}') is None
    report = parse_marker(
        marker + '{"op":"report","id":"x","pid":7,"severity":"error","sentence":"' + "s" * 5000
        + '","count":-3}'
    )  # fmt: skip
    assert report is not None
    assert (report.pid, len(report.sentence), report.count) == (7, repairs.MAX_TEXT, 1)


def _wait_for(condition, timeout: float = 10):  # type: ignore[no-untyped-def]
    from helpers import wait_until

    return wait_until(condition, timeout, "the child's report", interval=0.02)


# --- the storage checks, on real file systems -------------------------------------------------


def test_a_filling_disk_warns_then_errs_and_the_problem_goes_when_space_returns(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", megabytes=20) as disk:
        # floor: the smaller of 8 MB and 50 % of 20 MB = 8 MB; an error below 1.6 MB.
        config = make_config(disk / "data", disk_floor_mb=8, disk_floor_percent=50)
        config.data_dir.mkdir()
        registry = RepairsRegistry()
        check_storage(config, registry)
        assert registry.problems() == []
        filler = fill(disk, leave_bytes=5_000_000)
        check_storage(config, registry)
        [low] = registry.problems()
        assert (low.id, low.severity, low.title) == (
            "disk.low",
            "warning",
            "Storage is almost full",
        )
        assert low.sentence.startswith("The storage that holds the captured posts is almost full:")
        assert "MB free of 21.0 MB" in low.sentence or "MB free of 20.9 MB" in low.sentence
        filler.unlink()
        filler = fill(disk, leave_bytes=500_000)
        check_storage(config, registry)
        [full] = registry.problems()
        assert (full.severity, full.title, full.count) == ("error", "Storage is full", 2)
        assert full.sentence.endswith("New posts and photos may not be saved.")
        filler.unlink()
        check_storage(config, registry)
        assert registry.problems() == []


def test_a_read_only_remount_is_an_error_until_it_is_writable_again(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    config.data_dir.mkdir()
    registry = RepairsRegistry()
    with read_only(config.data_dir):
        with pytest.raises(OSError):
            (config.data_dir / "probe").write_bytes(b"x")
        check_storage(config, registry)
        [problem] = registry.problems()
        assert (problem.id, problem.severity) == ("disk.read_only", "error")
        assert "has become read-only" in problem.sentence
        assert "Restart the box" in problem.action
    check_storage(config, registry)
    assert registry.problems() == []


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (12, 4_321, 412_000_000, 16e9, 3e13)] == [
        "12 bytes", "4 kB", "412.0 MB", "16.0 GB", "30.0 TB",
    ]  # fmt: skip


# --- what the page, /healthz, /metrics and STATUS make of it ---------------------------------


class DaemonWithProblems:
    """The daemon as the page sees it, with a repairs list."""

    state = "running"

    def __init__(self, registry: RepairsRegistry) -> None:
        self.registry = registry

    def components(self) -> dict[str, ComponentStatus]:
        return {"proxy": ComponentStatus("running", 10, 0, None, None, None, None, None)}

    def heartbeat_age(self) -> float:
        return 0.1

    def request_training(self) -> tuple[bool, str]:
        return False, "no"

    def latest_status(self) -> None:
        return None

    def refresh_status(self) -> None:
        pass

    def problems(self) -> list[Problem]:
        return self.registry.problems()


def test_page_healthz_metrics_and_status_line_show_each_problem(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    seed_store(config.data_dir, posts=3, owners=2)
    give_password(config.data_dir, PASSWORD)
    registry = RepairsRegistry()
    client = create_app(config, DaemonWithProblems(registry)).test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert (
        client.post("/login", data={"password": PASSWORD, "csrf_token": token}).status_code == 302
    )

    html = client.get("/").get_data(as_text=True)
    assert 'id="repairs"' in html and "hidden" in html.split('id="repairs"')[1].split(">")[0]
    health = client.get("/healthz")
    assert (health.status_code, health.get_json()["status"]) == (200, "ok")

    registry.report(
        "disk.low", "warning", "The storage is almost full: 400 MB free.", "Delete old photos.",
        title="Storage is almost full",
    )  # fmt: skip
    health = client.get("/healthz")
    assert (health.status_code, health.get_json()["status"]) == (200, "ok")  # a warning only
    assert health.get_json()["problems"] == [
        {"id": "disk.low", "severity": "warning", "sentence": "The storage is almost full: 400 MB free."}
    ]  # fmt: skip
    registry.report(
        "child.hung.proxy", "error", "The proxy stopped answering for 12 seconds.",
        "Nothing, if it goes away.", title="The proxy stopped answering",
    )  # fmt: skip
    registry.report("child.hung.proxy", "error", "The proxy stopped answering for 12 seconds.",
                    "Nothing, if it goes away.", title="The proxy stopped answering")  # fmt: skip

    health = client.get("/healthz")
    assert (health.status_code, health.get_json()["status"]) == (503, "error")
    assert [p["id"] for p in health.get_json()["problems"]] == ["child.hung.proxy", "disk.low"]

    html = client.get("/").get_data(as_text=True)
    cards = html.split('id="repairs"')[1].split("</section>")[0]
    assert 'data-problem="child.hung.proxy"' in cards and 'class="repair repair-error"' in cards
    assert cards.index("child.hung.proxy") < cards.index("disk.low")  # errors first
    assert "The proxy stopped answering for 12 seconds." in cards
    assert "<strong>What to do:</strong> Delete old photos." in cards
    assert ", 2 times" in cards  # the hang was reported twice: one card, counted

    metrics = client.get("/metrics").get_data(as_text=True)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert samples[("instafly_problem", (("id", "child.hung.proxy"), ("severity", "error")))] == 1
    assert samples[("instafly_problem", (("id", "disk.low"), ("severity", "warning")))] == 1
    assert samples[("instafly_problems", (("severity", "error"),))] == 1
    assert samples[("instafly_problems", (("severity", "warning"),))] == 1

    status = client.get("/api/status").get_json()
    assert status["repairs"]["errors"] == 1
    assert status["repairs"]["problems"][0]["action"] == "Nothing, if it goes away."

    with Database(config.db_path) as db:
        document = collect_status(config, db.conn, DaemonWithProblems(registry))
    assert status_line(document).startswith("ERROR: The proxy stopped answering (+1 more); ")

    registry.resolve("child.hung.proxy")
    registry.resolve("disk.low")
    assert client.get("/healthz").status_code == 200
    assert 'data-problem="' not in client.get("/").get_data(as_text=True)


def test_without_the_daemon_stats_checks_the_disk_itself(tmp_path: Path) -> None:
    stats = os.statvfs(tmp_path)
    free_mb = stats.f_bavail * stats.f_frsize / 1e6
    # A floor of twice the free space (or the whole disk): a warning, not yet an error.
    config = make_config(tmp_path / "data", disk_floor_mb=free_mb * 2, disk_floor_percent=100)
    seed_store(config.data_dir, posts=1, owners=1)
    with Database(config.db_path) as db:
        document: StatusDocument = collect_status(config, db.conn)
    [problem] = document.repairs.problems
    assert (problem.id, problem.severity) == ("disk.low", "warning")
    as_json = document.as_dict()["repairs"]
    assert as_json["warnings"] == 1 and as_json["problems"][0]["id"] == "disk.low"
    assert dataclasses.asdict(problem) == as_json["problems"][0]
