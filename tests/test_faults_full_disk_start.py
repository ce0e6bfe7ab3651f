"""The daemon started when the data folder's disk is already full (a real tmpfs, full to the
last byte), as a box restarted after its card filled up.

The faults tests cover a disk that fills while the daemon runs; this is the start. The daemon
comes up and stays up, the page and /healthz say the disk is full and what to do, the phones
browse through the proxy and what they capture waits in the writer (counted on the page), a
photo dropped meanwhile waits in the drop folder, and once space is freed the box heals within
seconds: everything captured is stored, the photo is queued, and what was committed before
(posts, a finished job) is all still there.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import jpeg_bytes, wait_until
from support_capture import InstagramStandIn, browse_through, proxy_answers, recorded_requests
from support_daemon import daemon_config, http_get, running_daemon, seed_extras, seed_store
from support_faults import fill, small_tmpfs

from instaflyd.capture.ca import ensure_ca
from instaflyd.config import load_config

pytestmark = pytest.mark.slow

SEEDED_POSTS = 4  # committed before the disk filled (plus seed_extras' video post)


def problems(url: str) -> tuple[int, dict[str, dict]]:
    code, body = http_get(url + "/healthz")
    return code, {p["id"]: p for p in json.loads(body).get("problems", [])}


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_a_daemon_started_on_a_full_disk_says_so_counts_and_heals_once_there_is_room(
    tmp_path: Path,
) -> None:
    drop, enhanced = tmp_path / "drop", tmp_path / "enhanced"
    with (
        small_tmpfs(tmp_path / "data", 8) as data,
        InstagramStandIn(tmp_path / "origin") as origin,
    ):
        config_path, web_port, proxy_port = daemon_config(
            tmp_path,
            data,
            proxy={"mitmproxy_options": origin.mitmproxy_options()},
            watch={"drop_dir": str(drop), "output_dir": str(enhanced)},
        )
        config = load_config(config_path)
        seed_store(data, posts=SEEDED_POSTS)  # a box that ran before: its store, its CA
        seeded_jobs = seed_extras(data, drop, enhanced)
        ensure_ca(config.mitmproxy_dir)
        filler = fill(data)  # the card filled up; then the box restarts
        with running_daemon(config_path, data, web_port, proxy_port) as daemon:
            started = time.monotonic()
            code, said = wait_until(
                lambda: (p := problems(daemon.url))[0] == 503 and "disk.low" in p[1] and p,
                20,
                "the full disk's card on /healthz",
            )
            said_after = time.monotonic() - started
            full = said["disk.low"]
            assert full["severity"] == "error"
            assert full["sentence"] == (
                "The storage that holds the captured posts is full: 0 bytes free of 8.4 MB."
                " New posts and photos may not be saved."
            )
            # The store cannot be opened: for the full disk, not for "a failing card".
            assert said["store.waiting"]["sentence"].startswith(
                "The box cannot open its database: the data folder's disk is full."
            )
            code, page = daemon.get("/")
            html = page.decode()
            assert code == 503  # the store is shut: the page is the repairs list
            assert 'data-problem="disk.low"' in html
            assert "Storage is full" in html
            assert "<strong>What to do:</strong> Delete enhanced photos" in html

            # The phones browse meanwhile; what they capture waits in the writer, counted.
            wait_until(lambda: proxy_answers(daemon.proxy_port), 60, "the proxy")
            ca = str(data / "mitmproxy" / "mitmproxy-ca-cert.pem")
            statuses = [browse_through(daemon.proxy_port, ca, r) for r in recorded_requests()]
            assert statuses == [200] * 11 + [404]
            (drop / "during.jpg").write_bytes(jpeg_bytes(64, 64, seed=3))
            waiting = wait_until(
                lambda: (
                    (card := problems(daemon.url)[1].get("capture.waiting"))
                    and card["sentence"].startswith("11 ")
                    and card
                ),
                20,
                "the writer's card to count the 11 responses",
                output=lambda: f"{problems(daemon.url)[1]}\n{daemon.output()}",
            )
            assert waiting["severity"] == "error"
            assert waiting["sentence"] == (
                "11 captured responses are waiting to be saved: the data folder's disk is full."
            )
            code, page = daemon.get("/")
            assert code == 503
            assert "11 captured responses are waiting to be saved" in page.decode()
            assert daemon.process.poll() is None  # it never exited

            healing = time.monotonic()
            filler.unlink()  # the household frees space
            wait_until(lambda: http_get(daemon.url + "/healthz")[0] == 200, 30, "healthz ok again")
            healed_after = time.monotonic() - healing
            status = wait_until(
                lambda: (
                    (s := daemon.status())["capture"]["totals"]["posts"] == 32 + SEEDED_POSTS + 1
                    and s["drop_folder"]["jobs"].get("queued", 0)
                    + s["drop_folder"]["jobs"].get("waiting_model", 0)
                    == 2
                    and s
                ),
                30,
                "what was captured stored and the photo queued",
            )
            assert status["capture"]["store_retry"]["held"] == 0
            assert status["capture"]["totals"]["labelled"] == 3 + SEEDED_POSTS
            components = status["components"]
            assert components["worker"]["restarts"] == 0  # waited, never exited
            assert components["proxy"]["restarts"] == 0
            output = daemon.output()
        db = data / "instafly.db"
        # Nothing committed before is lost: the seeded posts, the finished and failed jobs.
        assert rows(db, "SELECT COUNT(*) FROM posts WHERE id BETWEEN '5000' AND '5003'") == [(4,)]
        assert rows(db, f"SELECT state FROM jobs WHERE id = {seeded_jobs['done']}") == [("done",)]
        assert rows(db, f"SELECT state FROM jobs WHERE id = {seeded_jobs['rejected']}") == [
            ("rejected",)
        ]
        names = {Path(p).name for (p,) in rows(db, "SELECT input_path FROM jobs")}
        assert {"beach.jpg", "broken.jpg", "waiting.jpg", "during.jpg"} <= names
    print(
        f"full-disk start: said after {said_after:.1f} s; healthy {healed_after:.1f} s"
        " after space was freed"
    )
    assert said_after < 10 and healed_after < 15
    assert "Traceback" not in output, output
