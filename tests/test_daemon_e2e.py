"""End to end: the whole appliance, as `instaflyd run` on temp folders, under the unit's hardening.

HTTPS traffic from a real client through the daemon's proxy to a local stand-in for Instagram
lands in the store; a non-Instagram host passes through undecrypted; with enough labelled posts
the scheduler trains a tiny model by itself; a photo dropped in the drop folder then comes out
enhanced. Where this machine can (root, libseccomp), the daemon and all its children run under
systemd/instaflyd.service's restrictions (tests/support_hardening.py), which shows that
TensorFlow and mitmproxy work under them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import support_capture
from helpers import cli_env, jpeg_bytes, wait_until
from PIL import Image
from support_daemon import (
    daemon_config,
    running_daemon,
    seed_store,
)

HARDENING = Path(__file__).resolve().parent / "support_hardening.py"

pytestmark = [
    pytest.mark.slow,
]


def hardening_wrapper(writable: Path) -> list[str]:
    """The sandbox command, or [] (with the reason printed) where this machine cannot do it."""
    wrapper = [sys.executable, str(HARDENING), "--writable", str(writable), "--"]
    probe = subprocess.run([*wrapper, "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        print(f"not under the unit's hardening: {probe.stderr.strip()}")
        return []
    return wrapper


def test_capture_train_and_enhance_through_the_running_daemon(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_store(data, posts=12, owners=4)  # earlier captures; the proxy brings 3 more labelled
    with support_capture.InstagramStandIn(tmp_path / "origin") as origin:
        config, web_port, proxy_port = daemon_config(
            tmp_path,
            data,
            # The stand-in origins listen on this box's loopback, which the proxy refuses
            # unless their ports are allowed.
            proxy={"mitmproxy_options": origin.mitmproxy_options(), "box_ports_allowed": [origin.port]},
            train={
                "min_labelled_posts": 15, "min_owners": 4, "epochs": 2, "batch_size": 8,
                "check_interval_seconds": 1, "validation_fraction": 0.3,
            },
            enhance={"steps": 3},
        )  # fmt: skip
        wrapper = hardening_wrapper(tmp_path)
        with running_daemon(config, data, web_port, proxy_port, cli_env(), wrapper) as daemon:
            wait_until(
                lambda: daemon.status()["components"]["proxy"]["state"] == "running", 60, "proxy"
            )
            assert daemon.status()["model"]["next_training"]["needed"] == 3

            # A browser session through the proxy, trusting the box's CA.
            ca = data / "mitmproxy" / "mitmproxy-ca-cert.pem"
            session = requests.Session()
            session.trust_env = False
            session.proxies = {"https": f"http://127.0.0.1:{proxy_port}"}
            for request in support_capture.recorded_requests():
                session.request(
                    request.method, request.url, data=request.body,
                    headers={"Cookie": request.cookie}, verify=str(ca), timeout=30,
                )  # fmt: skip
            # Not Instagram: the client sees the origin's own certificate, not the box's.
            with support_capture.tls_through_proxy(
                proxy_port, "localhost", origin.port, origin.ca_path
            ) as tls:
                assert tls.getpeercert(binary_form=True) == origin.leaf_der

            totals = wait_until(  # the proxy's writer commits counts a moment later
                lambda: (
                    (t := daemon.status()["capture"]["totals"])["labelled"] == 15
                    and t["flows"] >= 12
                    and t
                ),
                30,
                "the captured posts",
            )
            assert totals["posts"] == 12 + 32

            # The scheduler notices that training is due and trains by itself.
            model = wait_until(
                lambda: (m := daemon.status()["model"])["version"] == 1 and m, 240, "model v1"
            )
            assert model["samples"] == 15
            assert model["next_training"]["due"] is False

            # A photo dropped in the drop folder comes out enhanced.
            drop = data / "drop"
            drop.mkdir(exist_ok=True)
            (drop / ".holiday.jpg.part").write_bytes(jpeg_bytes(320, 320, 7))
            os.rename(drop / ".holiday.jpg.part", drop / "holiday.jpg")
            job = wait_until(
                lambda: next(
                    (j for j in daemon.status()["drop_folder"]["recent"] if j["state"] == "done"),
                    None,
                ),
                240,
                "the enhanced photo",
            )
            assert job["name"] == "holiday.jpg"
            assert job["model_version"] == 1
            assert job["score_change"] == pytest.approx(job["score_after"] - job["score_before"])
            [output] = (data / "enhanced").glob("holiday*.jpg")
            assert Image.open(output).size == (320, 320)
            [sidecar] = (data / "enhanced").glob("holiday*.json")
            assert json.loads(sidecar.read_text())["score_after"] == pytest.approx(
                job["score_after"]
            )
            assert daemon.get(job["after"])[0] == 200

            components = daemon.status()["components"]
            assert components["trainer"]["runs"] == 1
            assert components["trainer"]["failures"] == 0
            assert components["proxy"]["restarts"] == components["worker"]["restarts"] == 0
        assert daemon.process.returncode == 0
    assert "Traceback" not in daemon.output()
