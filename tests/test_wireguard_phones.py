"""Phones through WireGuard, for real: Debian's wireguard-go in network namespaces of the test's
own, each phone through its own configuration (as its QR code holds it) to the proxy, and an
Instagram stand-in over HTTPS in a namespace of its own. One proxy serves the module (the
`wireguard_box` fixture, tests/conftest.py); each test adds phones of its own (a fresh listener each: WireGuard handshakes on a listener slow down after
about ten)."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helpers import free_port, missing_on_this_machine, wait_until
from support_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PHONE
from support_capture import recorded_requests
from support_wireguard import NETNS_ETC, Lab, WireGuardBox, curl, new_device

from instaflyd.capture.wireguard import CHECK_HOST, CHECK_PATH, client_conf
from instaflyd.config import load_config
from instaflyd.status.collect import devices_section
from instaflyd.store import Database
from instaflyd.store.devices import revoke_wireguard_device, seen_devices
from instaflyd.web import create_app
from instaflyd.web.server import WebServer

INSTAGRAM_ADDRESS = "157.240.1.174"  # any public address: the phone routes it into its tunnel
pytestmark = pytest.mark.slow


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


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


def test_two_phones_each_through_its_own_tunnel(
    wireguard_box: WireGuardBox, tmp_path: Path
) -> None:
    box = wireguard_box
    the_lab, data, wg_port, origin = box.lab, box.data, box.wg_port, box.origin
    origin_address, ca, db = box.origin_address, box.ca, box.db
    phone_a, box_a, anna_address = the_lab.namespace("a")
    phone_b, box_b, _ = the_lab.namespace("b")
    anna = box.first_phone  # added before the proxy started
    ben = new_device(box.config, "Ben's phone")  # while it runs: a listener appears
    assert (anna.port, ben.port) == (wg_port, wg_port + 1)
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

    ben_posts = "SELECT post_id FROM device_posts WHERE device = ?"
    wait_until(lambda: rows(db, ben_posts, ben.key), 20, "Ben's post")
    wait_until(
        lambda: rows(db, "SELECT COUNT(*) FROM device_posts WHERE device = ?", anna.key) == [(32,)],
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
    status, body = curl(the_lab, phone_b, url.replace("http:", "https:"), "--cacert", str(ca))
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
    # Ben's phone trusts the box now; an app that refuses it for Instagram pins its certificates.
    host = "i.instagram.com"
    status, _ = curl(
        the_lab, phone_b, f"https://{host}/", "--resolve", f"{host}:443:{INSTAGRAM_ADDRESS}"
    )
    assert status == 60
    wait_until(lambda: devices()[ben.key][3] == 1, 20, "Ben's pinned handshake")
    assert devices()[ben.key] == ("Ben's phone", 1, 1, 1)
    with Database(db) as store:
        line = {d.key: d for d in devices_section(load_config(box.config), store.conn).seen}[
            ben.key
        ]
    assert line.advice is not None and line.advice.startswith(
        "An app refused the box once (last: i.instagram.com) although this phone trusts the"
        " certificate: it pins its certificates"
    )

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

    # Anna sets the Wi-Fi proxy instead: the box knows her phone by its address now.
    wifi = ["-x", f"http://{box_a}:{box.proxy_port}"]
    status, body = curl(the_lab, phone_a, url, *wifi)
    assert json.loads(body) == {
        "instafly": "check", "secure": False, "device": f"ip:{anna_address}", "via": "proxy",
    }  # fmt: skip
    post = "https://www.instagram.com/p/CAnqPB-Jzcj/?__a=1"
    cookie = next(r.cookie for r in recorded_requests() if r.url == post)
    status, body = curl(the_lab, phone_a, post, *wifi, "--cacert", str(ca), "-H", f"Cookie: {cookie}",
                        "-o", "/dev/null", "-w", "%{http_code}")  # fmt: skip
    assert (status, body) == (0, "200")
    wait_until(
        lambda: rows(db, ben_posts, f"ip:{anna_address}") == rows(db, ben_posts, ben.key),
        20,
        "the post captured through the Wi-Fi proxy, by Anna's address",
    )


def spki_sha256(pem: Path) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes: the key's SHA-256, base64."""
    certificate = x509.load_pem_x509_certificate(pem.read_bytes())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def chromium_in(ns: str, directory: Path) -> Path:
    """Debian's Chromium, started inside the phone's namespace (Playwright talks to it over a
    pipe, so it needs no network of ours)."""
    if not CHROMIUM.exists():
        missing_on_this_machine(f"{CHROMIUM} is missing (sudo apt install chromium)")
    wrapper = directory / "chromium-in-phone"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def live_check_state(page: Any, state: str) -> str:
    """Wait until the set-up page's live check says `state`; the words it shows then."""
    page.wait_for_selector(f"#live-check[data-state={state}]", timeout=20_000)
    return " ".join(page.locator(f"#live-check [data-when={state}]").inner_text().split())


@pytest.mark.browser
def test_the_live_check_on_the_phone_turns_to_ready(
    wireguard_box: WireGuardBox, tmp_path: Path
) -> None:
    """A phone opens the set-up page before its tunnel is up, then with the tunnel but without
    the certificate, then trusting it: the page says which step is missing, then "Ready"."""
    from playwright.sync_api import sync_playwright

    box = wireguard_box

    phone, box_address, _ = box.lab.namespace("c")
    carla = new_device(box.config, "Carla's phone")
    config = load_config(box.config, search=False)
    web = WebServer(create_app(config), "0.0.0.0", free_port())
    web.start()
    setup_url = f"http://{box_address}:{web.address.rsplit(':', 1)[1]}/setup"
    chromium = chromium_in(phone, tmp_path)
    (NETNS_ETC / phone).mkdir(parents=True, exist_ok=True)
    (NETNS_ETC / phone / "resolv.conf").write_text("nameserver 10.0.0.53\n")
    try:
        with sync_playwright() as started:
            playwright: Any = started  # Playwright's overloads, not the test, are the point
            browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            page = browser.new_page(**PHONE)
            problems: list[str] = []  # the check's own failures are expected (console errors)

            def failed(response: Any) -> None:
                if response.status >= 400:
                    problems.append(f"{response.status} {response.url}")

            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("response", failed)
            page.goto(setup_url)
            assert live_check_state(page, "unreached").startswith(
                "Step 1 is missing: this phone's traffic does not reach the box."
            )
            # The WireGuard app scans the phone's code: the same page notices within seconds.
            box.lab.phone(phone, client_conf(carla, box_address, box_address), tmp_path)
            assert live_check_state(page, "untrusted").startswith(
                "Not trusted yet: this phone reaches the box, but does not trust its certificate."
            )
            browser.close()

            # The phone trusts the box's certificate (here: Chromium told to trust its key).
            trusting = [
                *CHROMIUM_ARGS,
                f"--ignore-certificate-errors-spki-list={spki_sha256(box.ca)}",
            ]
            browser = playwright.chromium.launch(executable_path=str(chromium), args=trusting)
            page = browser.new_page(**PHONE)
            page.goto(setup_url)
            assert live_check_state(page, "ready") == (
                "Ready: this phone's Instagram traffic goes through the box, and it trusts the"
                " box's certificate (through WireGuard)."
            )
            page.screenshot(path=str(ARTIFACTS / "setup-live-check-ready.png"), full_page=True)
            browser.close()
    finally:
        web.stop()
    # The failures before trusting were told apart from an app that pins.
    with Database(box.db) as db:
        carla_seen = {d.key: d for d in devices_section(config, db.conn).seen}[carla.key]
    assert carla_seen.tls_not_trusted >= 1 and carla_seen.tls_pinned == 0
    assert carla_seen.trusts_box
    assert problems == []
