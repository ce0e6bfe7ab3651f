"""The daemon started on a read-only data folder (a real read-only bind mount) keeps running.

An SD card the kernel remounted read-only, and a box restarted on it: before, `instaflyd run`
exited at its first open of the store and systemd restarted it in a loop. Now it starts, the
page and /healthz (503) say the store cannot be opened and what to do, the phones browse
through the proxy (what they capture waits in the writer), a photo dropped meanwhile waits in
the drop folder, and once the folder is writable again the box heals by itself: everything
captured is stored, the photo is queued, one log line said the fault and one its end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import jpeg_bytes, wait_until
from support_capture import InstagramStandIn, browse_through, proxy_answers, recorded_requests
from support_daemon import daemon_config, http_get, running_daemon
from support_faults import read_only, remount

from instaflyd.capture.ca import ensure_ca
from instaflyd.config import load_config
from instaflyd.store import Database

pytestmark = pytest.mark.slow


def problems(url: str) -> tuple[int, dict[str, dict]]:
    code, body = http_get(url + "/healthz")
    return code, {p["id"]: p for p in json.loads(body).get("problems", [])}


def test_a_daemon_started_read_only_serves_the_page_and_heals_once_writable(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    drop, enhanced = tmp_path / "drop", tmp_path / "enhanced"
    drop.mkdir()
    with InstagramStandIn(tmp_path / "origin") as origin:
        config_path, web_port, proxy_port = daemon_config(
            tmp_path,
            data,
            proxy={"mitmproxy_options": origin.mitmproxy_options()},
            watch={"drop_dir": str(drop), "output_dir": str(enhanced)},
        )
        config = load_config(config_path)
        Database(config.db_path).close()  # a box that ran before: its store, its CA
        ensure_ca(config.mitmproxy_dir)
        with (
            read_only(data),
            running_daemon(config_path, data, web_port, proxy_port) as daemon,
        ):
            started = time.monotonic()
            code, said = wait_until(
                lambda: (
                    (p := problems(daemon.url))[0] == 503
                    and {"store.waiting", "disk.read_only"} <= set(p[1])
                    and p
                ),
                20,
                "the store's card on /healthz",
            )
            said_after = time.monotonic() - started
            assert said["store.waiting"]["severity"] == "error"
            assert said["store.waiting"]["sentence"].startswith(
                "The box cannot open its database: the data folder is read-only."
            )
            code, page = daemon.get("/")
            html = page.decode()
            assert code == 503
            assert "The box cannot open its database" in html
            assert 'data-problem="store.waiting"' in html
            assert "<strong>What to do:</strong> The SD card or disk" in html
            code, body = daemon.get("/api/status")
            assert code == 503 and "read-only" in json.loads(body)["error"]

            # The phones browse meanwhile; what they capture waits in the writer.
            wait_until(lambda: proxy_answers(daemon.proxy_port), 60, "the proxy")
            ca = str(data / "mitmproxy" / "mitmproxy-ca-cert.pem")
            statuses = [browse_through(daemon.proxy_port, ca, r) for r in recorded_requests()]
            assert statuses == [200] * 11 + [404]
            (drop / "during.jpg").write_bytes(jpeg_bytes(64, 64, seed=3))
            wait_until(
                lambda: "capture.waiting" in problems(daemon.url)[1], 20, "the writer's card"
            )
            assert daemon.process.poll() is None  # it never exited

            healing = time.monotonic()
            remount(data, writable=True)
            wait_until(lambda: http_get(daemon.url + "/healthz")[0] == 200, 30, "healthz ok again")
            healed_after = time.monotonic() - healing
            status = wait_until(
                lambda: (
                    (s := daemon.status())["capture"]["totals"]["posts"] == 32
                    and sum(s["drop_folder"]["jobs"].values()) == 1
                    and s
                ),
                30,
                "what was captured stored and the photo queued",
            )
            assert status["capture"]["totals"]["labelled"] == 3
            assert [job["name"] for job in status["drop_folder"]["recent"]] == ["during.jpg"]
            components = status["components"]
            assert components["worker"]["restarts"] == 0  # waited, never exited
            assert components["proxy"]["restarts"] == 0
            code, page = daemon.get("/")
            assert code == 200 and "store.waiting" not in page.decode()
            output = daemon.output()
    print(
        f"read-only start: said after {said_after:.1f} s; healthy {healed_after:.1f} s"
        " after the folder was writable"
    )
    assert said_after < 10 and healed_after < 15
    assert output.count("the store cannot be opened") == 1, output
    assert output.count("the store opened after") == 1, output
    assert output.count("worker | ") >= 1
    assert "Traceback" not in output, output
