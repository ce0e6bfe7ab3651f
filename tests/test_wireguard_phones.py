"""Phones through WireGuard, for real: Debian's wireguard-go in network namespaces of the test's
own, each phone through its own configuration (as its QR code holds it) to the proxy, and an
Instagram stand-in over HTTPS in a namespace of its own."""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import free_port, wait_until, write_config
from support_capture import recorded_requests, running_proxy
from support_wireguard import Lab, lab, origin_in

from instaflyd.capture.wireguard import CHECK_HOST, CHECK_PATH, add_device, client_conf
from instaflyd.config import load_config
from instaflyd.store import Database
from instaflyd.store.devices import WireGuardDevice, revoke_wireguard_device, seen_devices

INSTAGRAM_ADDRESS = "157.240.1.174"  # any public address: the phone routes it into its tunnel
pytestmark = pytest.mark.slow


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def curl(the_lab: Lab, ns: str, url: str, *options: str, timeout: float = 10) -> tuple[int, str]:
    """(curl's exit status, the HTTP status or body) from inside the phone's namespace."""
    result = the_lab.run(ns, "curl", "-sS", "--max-time", str(timeout), *options, url, check=False)
    return result.returncode, result.stdout.strip()


def replay(the_lab: Lab, ns: str, ca: Path, tmp: Path, only: str | None = None) -> list[str]:
    """The recorded browser session (or the one request whose URL ends with `only`), as a
    phone's browser sends it: names resolved to an Instagram address, the box's CA trusted."""
    statuses = []
    tmp.mkdir(exist_ok=True)
    for index, request in enumerate(recorded_requests()):
        if only is not None and not request.url.endswith(only):
            continue
        host = request.url.split("/")[2]
        body = tmp / f"body-{index}"
        body.write_bytes(request.body)
        options = ["-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(ca), "-X",
                   request.method, "--resolve", f"{host}:443:{INSTAGRAM_ADDRESS}",
                   "-H", f"Cookie: {request.cookie}"]  # fmt: skip
        if request.body:
            options += ["--data-binary", f"@{body}"]
        statuses.append(curl(the_lab, ns, request.url, *options)[1])
    return statuses


def new_device(config_path: Path, name: str) -> WireGuardDevice:
    config = load_config(config_path, search=False)
    with Database(config.db_path) as db, db.transaction() as conn:
        return add_device(conn, config, name)


def test_two_phones_each_through_its_own_tunnel(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port, wg_port = free_port(), free_port()
    with lab() as the_lab:
        origin_ns, _, origin_address = the_lab.namespace("o")
        phone_a, box_a, _ = the_lab.namespace("a")
        phone_b, box_b, _ = the_lab.namespace("b")
        with origin_in(the_lab, origin_ns, origin_address, tmp_path / "origin") as origin:
            config = write_config(
                tmp_path / "instafly.yaml",
                {
                    "data_dir": str(data),
                    "proxy": {
                        "listen_host": "0.0.0.0",
                        "listen_port": port,
                        "mitmproxy_options": origin["mitmproxy_options"],
                    },
                    "wireguard": {"port": wg_port, "max_devices": 2},
                },
            )
            anna = new_device(config, "Anna's phone")  # before the proxy starts
            with running_proxy(config, port, tmp_path / "proxy.log") as process:
                ben = new_device(config, "Ben's phone")  # while it runs: a listener appears
                assert (anna.port, ben.port) == (wg_port, wg_port + 1)
                ca = data / "mitmproxy" / "mitmproxy-ca-cert.pem"
                the_lab.phone(phone_a, client_conf(anna, box_a, box_a), tmp_path, dns="10.0.0.53")
                the_lab.phone(phone_b, client_conf(ben, box_b, box_b), tmp_path, dns="10.0.0.53")

                # Both phones at once: Anna browses the whole session, Ben one post.
                with ThreadPoolExecutor(2) as pool:
                    a = pool.submit(replay, the_lab, phone_a, ca, tmp_path / "a")
                    b = pool.submit(replay, the_lab, phone_b, ca, tmp_path / "b",
                                    only="/p/CAnqPB-Jzcj/?__a=1")  # fmt: skip
                    statuses_a, statuses_b = a.result(), b.result()
                assert statuses_a == ["200"] * 11 + ["404"]
                assert statuses_b == ["200"]

                db = data / "instafly.db"
                ben_posts = "SELECT post_id FROM device_posts WHERE device = ?"
                wait_until(lambda: rows(db, ben_posts, ben.key), 20, "Ben's post")
                wait_until(
                    lambda: (
                        rows(db, "SELECT COUNT(*) FROM device_posts WHERE device = ?", anna.key)
                        == [(32,)]
                    ),
                    20,
                    "Anna's 32 posts",
                )
                assert rows(db, ben_posts, ben.key) == rows(
                    db, "SELECT id FROM posts WHERE shortcode = 'CAnqPB-Jzcj'"
                )

                # Not Instagram: passed through undecrypted (the origin's own certificate).
                status, body = curl(
                    the_lab, phone_a, f"https://{origin_address}:{origin['port']}/nothing",
                    "--cacert", str(origin["ca"]),
                )  # fmt: skip
                assert (status, body) == (0, "not recorded")

                # The live check, answered by the proxy (its DNS names the check's host).
                url = f"http://{CHECK_HOST}{CHECK_PATH}"
                status, body = curl(the_lab, phone_b, url)
                assert status == 0, body
                assert json.loads(body) == {
                    "instafly": "check", "secure": False, "device": ben.key, "via": "wireguard",
                }  # fmt: skip
                status, body = curl(the_lab, phone_b, url.replace("http:", "https:"))
                assert status == 60, body  # curl: the certificate is not trusted
                status, body = curl(
                    the_lab, phone_b, url.replace("http:", "https:"), "--cacert", str(ca)
                )
                assert json.loads(body)["secure"] is True

                # Each device seen, with its posts of this week and its failure's cause.
                def devices() -> dict[str, tuple]:
                    with Database(db) as store:
                        return {
                            d.key: (d.name, d.posts_since, d.tls_untrusted, d.tls_pinned)
                            for d in seen_devices(store.conn, time.time() - 7 * 86400, 10)
                        }

                wait_until(lambda: devices()[ben.key][2] == 1, 20, "Ben's untrusted handshake")
                assert devices()[anna.key] == ("Anna's phone", 32, 0, 0)
                assert devices()[ben.key] == ("Ben's phone", 1, 1, 0)

                # Remove Anna's phone: her tunnel stops at once, Ben's goes on.
                with Database(db) as store, store.transaction() as conn:
                    assert revoke_wireguard_device(conn, anna.id)
                listener = data / "wireguard" / f"device-{anna.id}.json"
                wait_until(lambda: not listener.exists(), 10, "the removed phone's listener to go")
                time.sleep(0.5)  # the file goes first, then the listener (same reload)
                status, _ = curl(the_lab, phone_a, url, timeout=4)
                assert status == 28  # curl: timed out, nothing answers
                status, body = curl(the_lab, phone_b, url)
                assert json.loads(body)["device"] == ben.key
        # mitmproxy may end with SIGSEGV on SIGTERM after WireGuard traffic: a stop all the same.
        assert process.returncode in (0, -11)
