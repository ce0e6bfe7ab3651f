"""A config broken while the daemon runs is said at once; SIGHUP reloads; SIGTERM still stops.

One real daemon, one process all along: the file is broken (the repairs list and /healthz say
so within seconds, the children keep running), fixed with a new proxy port (a "not in use yet"
warning), reloaded with SIGHUP (the proxy restarts with it and listens on the new port; the
worker, whose settings did not change, keeps running), a worker-only setting reloaded (the worker
restarts, the proxy keeps running), broken again and reloaded (the safe-mode page with the problems), fixed (the daemon runs
again), and stopped with SIGTERM (exit 0).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from helpers import free_port, wait_until
from support_daemon import daemon_config, http_get, running_daemon

pytestmark = pytest.mark.slow


def problems(url: str) -> dict[str, dict]:
    _, body = http_get(url + "/healthz")
    return {p["id"]: p for p in json.loads(body).get("problems", [])}


def test_a_broken_config_is_said_sighup_reloads_and_safe_mode_heals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config, web_port, proxy_port = daemon_config(tmp_path, data)
    good = yaml.safe_load(config.read_text())
    with running_daemon(config, data, web_port, proxy_port) as daemon:
        first = wait_until(
            lambda: (c := daemon.status()["components"])["proxy"]["state"] == "running" and c,
            60,
            "the proxy",
        )
        pid = daemon.process.pid

        # Broken while running: said within seconds; nothing restarts, nothing stops.
        broken = {**good, "proxy": {**good["proxy"], "listen_prot": 1}}
        config.write_text(yaml.safe_dump(broken))
        started = time.monotonic()
        invalid = wait_until(lambda: problems(daemon.url).get("config.invalid"), 10, "the card")
        said = time.monotonic() - started
        assert invalid["severity"] == "error"
        assert (
            "proxy -> listen_prot: unknown key; did you mean 'listen_port'?"
            in (invalid["sentence"])
        )
        code, body = http_get(daemon.url + "/healthz")
        assert code == 503 and json.loads(body)["status"] == "error"
        _, page = daemon.get("/")
        assert 'data-problem="config.invalid"' in page.decode()
        assert "sudo systemctl reload instaflyd" in page.decode()
        assert daemon.status()["components"]["proxy"]["pid"] == first["proxy"]["pid"]

        # Fixed, with a new proxy port: valid, but not in use until a reload.
        new_port = free_port()
        changed = {**good, "proxy": {**good["proxy"], "listen_port": new_port}}
        config.write_text(yaml.safe_dump(changed))
        wait_until(lambda: "config.changed" in problems(daemon.url), 10, "the changed warning")
        assert "config.invalid" not in problems(daemon.url)
        assert http_get(daemon.url + "/healthz")[0] == 200  # a warning only

        # SIGHUP: the same daemon process, its children started again with the new file.
        daemon.process.send_signal(signal.SIGHUP)
        after = wait_until(
            lambda: (
                (s := daemon.status())["capture"]["proxy"]["listen_port"] == new_port
                and s["components"]["proxy"]["state"] == "running"
                and s
            ),
            60,
            "the reloaded proxy",
        )
        assert after["components"]["proxy"]["pid"] != first["proxy"]["pid"]
        # Only the proxy reads proxy.listen_port: the worker went on running, the same process.
        assert after["components"]["worker"]["pid"] == first["worker"]["pid"]
        assert os.path.exists(f"/proc/{first['worker']['pid']}")
        assert problems(daemon.url) == {}
        assert daemon.process.poll() is None and daemon.process.pid == pid

        # A setting only the worker reads: the worker is started again, the proxy is kept.
        settled = {**changed, "watch": {**changed.get("watch", {}), "settle_seconds": 0.7}}
        config.write_text(yaml.safe_dump(settled))
        daemon.process.send_signal(signal.SIGHUP)
        again = wait_until(
            lambda: (
                (s := daemon.status())["components"]["worker"]["pid"]
                not in (None, first["worker"]["pid"])
                and s["components"]["worker"]["state"] == "running"
                and s["components"]["proxy"]["state"] == "running"
                and s
            ),
            60,
            "the worker started again",
        )
        assert again["components"]["proxy"]["pid"] == after["components"]["proxy"]["pid"]
        assert again["components"]["proxy"]["restarts"] == 0
        changed = settled

        # Broken and reloaded: the safe-mode page, as at start; fixed: running again.
        config.write_text(yaml.safe_dump(broken))
        wait_until(lambda: "config.invalid" in problems(daemon.url), 10, "the card again")
        daemon.process.send_signal(signal.SIGHUP)
        code, body = wait_until(
            lambda: (
                (r := http_get(daemon.url + "/healthz"))[0] == 503
                and json.loads(r[1])["status"] == "safe_mode"
                and r
            ),
            30,
            "safe mode",
        )
        _, page = http_get(daemon.url + "/")
        assert "listen_prot: unknown key" in page.decode()
        config.write_text(yaml.safe_dump(changed))

        def running_again() -> bool:
            code, body = daemon.get("/api/status")
            return code == 200 and json.loads(body)["components"]["proxy"]["state"] == "running"

        wait_until(running_again, 60, "healed")
        assert daemon.process.poll() is None and daemon.process.pid == pid
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(20) == 0
    print(f"a broken config was said after {said:.1f} s")
    assert said < 6
    assert "SIGHUP received: reloading the config" in daemon.output()
