"""Intervals run on the monotonic clock: a step of the wall clock (an injected offset) neither
puts off the hourly prune of the event log nor expires, all at once, the CDN images waiting in
the capture writer for the post that names them, nor prunes which phone captured which post."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from helpers import sql_scalar
from test_capture_addon import SIDECAR_ID, cover_size, image_flow, profile_flow
from test_clock_steps import START, SteppedClock, add_events

from instaflyd.capture.flows import captured_response
from instaflyd.capture.writer import StoreWriting
from instaflyd.clock import SteadyClock
from instaflyd.config import build_config
from instaflyd.daemon.housekeeping import DAY, PRUNE_EVERY_SECONDS, Housekeeping
from instaflyd.store import Database


def test_a_step_back_does_not_put_off_the_hourly_prune(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    clock = SteppedClock()
    with Database(config.db_path) as db:
        housekeeping = Housekeeping(config, db, SteadyClock(clock.wall, clock.mono), keep_newest=0)
        assert housekeeping.tick() == 0  # nothing old yet; the next prune is due in an hour
        add_events(db, 5, START - 45 * DAY)  # 35 days old even on the clock set back below
        clock.offset = -10 * DAY  # the clock is set ten days back
        clock.advance(PRUNE_EVERY_SECONDS + 1)  # an hour later the prune is due, as ever
        assert housekeeping.tick() == 5
        assert sql_scalar(db, "SELECT COUNT(*) FROM events") == 0


def test_a_step_forward_does_not_expire_the_images_waiting_for_their_post(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    max_body = config.proxy.max_body_bytes
    image = captured_response(image_flow(48, 60, path="s320x320/"), max_body)
    profile = captured_response(profile_flow(), max_body)
    assert image is not None and profile is not None
    writing = StoreWriting(config)
    try:
        assert writing.open()
        writing.take(image)  # its post is not known yet: the image waits
        assert len(writing.pending) == 1
        stepped = time.time() + 2 * DAY  # NTP catches up with a box that booted in the past
        monkeypatch.setattr(time, "time", lambda: stepped)
        writing.flush()  # where waiting images expire
        assert len(writing.pending) == 1
        assert writing.counts["images_unmatched"] == 0
        writing.take(profile)
        writing.flush()
    finally:
        writing.close()
    assert cover_size(config, SIDECAR_ID) == (48, 60)


def test_waiting_images_still_expire_after_a_step_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = build_config(
        {"data_dir": str(tmp_path / "data"), "proxy": {"pending_images_max_age_seconds": 0.2}}
    )
    image = captured_response(image_flow(48, 60), config.proxy.max_body_bytes)
    assert image is not None
    writing = StoreWriting(config)
    try:
        assert writing.open()
        writing.take(image)
        stepped = time.time() - 2 * DAY  # the clock is set two days back
        monkeypatch.setattr(time, "time", lambda: stepped)
        time.sleep(0.3)  # the age limit passes on the monotonic clock
        writing.flush()
        assert len(writing.pending) == 0
    finally:
        writing.close()
    with Database(config.db_path) as db:
        assert sql_scalar(db, "SELECT value FROM counters WHERE name = 'images_unmatched'") == 1


def test_a_step_forward_does_not_prune_which_phone_captured_which_post(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    profile = captured_response(profile_flow(), config.proxy.max_body_bytes)
    assert profile is not None
    writing = StoreWriting(config)
    try:
        assert writing.open()
        writing.take(dataclasses.replace(profile, device="ip:192.168.1.20"))
        stepped = time.time() + 30 * DAY  # the clock jumps a month ahead
        monkeypatch.setattr(time, "time", lambda: stepped)
        writing.prune_device_posts()  # keeps a week (and a day) of them
    finally:
        writing.close()
    with Database(config.db_path) as db:
        assert sql_scalar(db, "SELECT COUNT(*) FROM device_posts") == 20
