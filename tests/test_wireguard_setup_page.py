"""The set-up page's phones, over real HTTP: add a phone (its own keys, QR code and .conf),
remove it, the budget, naming devices, and what a stranger on the LAN never gets to see."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support_daemon import give_password
from support_web import log_in, page_token, serving

from instaflyd.capture.wireguard import CHECK_HOST, allowed_ips, public_key
from instaflyd.config import Config, build_config
from instaflyd.network import lan_address
from instaflyd.store import Database
from instaflyd.store.devices import device_seen, get_wireguard_device, wireguard_devices


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = build_config(
        {
            "model": {"input_size": 64, "weights": "none"},
            "web": {"host": "127.0.0.1"},
            "wireguard": {"port": 40100, "max_devices": 2},
        },
        data_dir=tmp_path / "data",
    )
    give_password(config.data_dir)
    return config


@pytest.fixture
def base(config: Config) -> Iterator[str]:
    with serving(config) as web:
        yield f"http://{web.address}"


def add_phone(session: requests.Session, base: str, name: str) -> requests.Response:
    return session.post(
        base + "/setup/phones",
        data={"name": name, "csrf_token": page_token(session, base + "/setup")},
    )


def test_a_phone_gets_its_own_keys_qr_code_and_conf(
    base: str, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session = log_in(base)
    page = add_phone(session, base, "Anna's  iPhone\n")
    assert page.status_code == 200
    assert "Anna&#39;s iPhone added: scan its code with the WireGuard app" in page.text
    with Database(config.db_path) as db:
        (anna,) = wireguard_devices(db.conn)
    assert (anna.name, anna.port, anna.address) == ("Anna's iPhone", 40100, "10.0.0.2/32")
    assert anna.server_private_key != anna.device_private_key
    assert re.search(rf'id="phone-{anna.id}"[^>]*>\s*<h3>Anna&#39;s iPhone</h3>\s*'
                     r'<figure class="qr"><svg', page.text)  # fmt: skip

    conf = session.get(f"{base}/setup/phones/{anna.id}.conf")
    assert conf.status_code == 200
    assert conf.headers["Content-Disposition"] == f'attachment; filename="instafly-{anna.id}.conf"'
    assert conf.headers["Cache-Control"] == "no-store"
    fields = dict(line.split(" = ", 1) for line in conf.text.splitlines() if " = " in line)
    box = lan_address()
    assert fields == {
        "PrivateKey": anna.device_private_key,
        "Address": "10.0.0.2/32",
        "DNS": "10.0.0.53",
        "PublicKey": public_key(anna.server_private_key),
        "AllowedIPs": fields["AllowedIPs"],
        "Endpoint": f"{box}:40100",
    }
    assert fields["AllowedIPs"].endswith(", ::/0")
    assert fields["AllowedIPs"] == ", ".join(allowed_ips(box))  # all but the box itself
    assert "0.0.0.0/0" not in fields["AllowedIPs"]

    # The second phone takes the next port; the third is beyond the budget of two.
    assert "Ben added" in add_phone(session, base, "Ben").text
    refused = add_phone(session, base, "Carla")
    assert "No phone added: 2 phones are set up, the most this box allows." in refused.text
    with Database(config.db_path) as db:
        assert [(d.name, d.port) for d in wireguard_devices(db.conn)] == [
            ("Anna's iPhone", 40100),
            ("Ben", 40101),
        ]
    assert anna.device_private_key not in caplog.text
    assert anna.server_private_key not in caplog.text


def test_a_stranger_sees_no_phone_code_and_cannot_add_or_download(
    base: str, config: Config
) -> None:
    session = log_in(base)
    add_phone(session, base, "Anna")
    with Database(config.db_path) as db:
        (anna,) = wireguard_devices(db.conn)

    stranger = requests.Session()
    page = stranger.get(base + "/setup")
    assert page.status_code == 200
    assert "Log in to add a phone or show its code" in page.text
    assert anna.device_private_key not in page.text and "phone-list" not in page.text
    assert 'id="live-check"' in page.text  # the check works for anyone's phone
    policy = page.headers["Content-Security-Policy"]
    assert f"connect-src 'self' http://{CHECK_HOST} https://{CHECK_HOST};" in policy

    download = stranger.get(f"{base}/setup/phones/{anna.id}.conf", allow_redirects=False)
    assert download.status_code == 302 and "/login" in download.headers["Location"]
    basic = base64.b64encode(b"x:wrong").decode()
    download = stranger.get(
        f"{base}/setup/phones/{anna.id}.conf", headers={"Authorization": f"Basic {basic}"}
    )
    assert download.status_code == 401
    # Without the page's CSRF token (another site's form), nothing is added or removed.
    assert session.post(base + "/setup/phones", data={"name": "x"}).status_code == 400
    gone = session.post(f"{base}/setup/phones/{anna.id}/remove", data={})
    assert gone.status_code == 400
    with Database(config.db_path) as db:
        assert [d.id for d in wireguard_devices(db.conn)] == [anna.id]


def test_removing_a_phone_forgets_its_keys_at_once(base: str, config: Config) -> None:
    session = log_in(base)
    add_phone(session, base, "Anna")
    with Database(config.db_path) as db:
        (anna,) = wireguard_devices(db.conn)
    page = session.post(
        f"{base}/setup/phones/{anna.id}/remove",
        data={"csrf_token": page_token(session, base + "/setup")},
    )
    assert "Anna removed: the box no longer accepts it" in page.text
    assert "No phone set up yet." in page.text
    with Database(config.db_path) as db:
        removed = get_wireguard_device(db.conn, anna.id)
        assert wireguard_devices(db.conn) == []
    assert removed is not None and removed.revoked is not None
    assert (removed.server_private_key, removed.device_private_key) == ("", "")
    assert session.get(f"{base}/setup/phones/{anna.id}.conf").status_code == 404
    again = session.post(
        f"{base}/setup/phones/{anna.id}/remove",
        data={"csrf_token": page_token(session, base + "/setup")},
    )
    assert "That phone was removed already." in again.text
    # Its port is free for the next phone, with new keys.
    add_phone(session, base, "Anna's new phone")
    with Database(config.db_path) as db:
        (new,) = wireguard_devices(db.conn)
    assert new.port == anna.port and new.device_private_key != anna.device_private_key


@pytest.mark.slow
def test_the_household_names_a_device_the_proxy_saw(base: str, config: Config) -> None:
    with Database(config.db_path) as db, db.transaction() as conn:
        device_seen(conn, "ip:192.168.1.40")
    session = log_in(base)
    page = session.get(base + "/setup")
    assert 'data-device="ip:192.168.1.40"' in page.text
    assert "<strong>192.168.1.40</strong>" in page.text
    named = session.post(
        base + "/devices/name",
        data={
            "key": "ip:192.168.1.40",
            "name": "Kitchen iPad",
            "csrf_token": page_token(session, base + "/setup"),
        },
    )
    assert "Named &#39;Kitchen iPad&#39;." in named.text
    assert "<strong>Kitchen iPad</strong>" in named.text
    too_long = session.post(
        base + "/devices/name",
        data={
            "key": "ip:192.168.1.40",
            "name": "x" * 61,
            "csrf_token": page_token(session, base + "/setup"),
        },
    )
    assert too_long.status_code == 400
    for key in ("ip:10.9.9.9", "wg:" + "9" * 30, "wg:x", "wg:-1"):
        unknown = session.post(
            base + "/devices/name",
            data={"key": key, "name": "x", "csrf_token": page_token(session, base + "/setup")},
        )
        assert unknown.status_code == 200 and "No such device." in unknown.text, key
    assert (
        session.post(
            base + "/devices/name",
            data={
                "key": "ip:" + "1" * 100,
                "name": "x",
                "csrf_token": page_token(session, base + "/setup"),
            },
        ).status_code
        == 400
    )


def test_a_phone_id_sqlite_cannot_hold_is_a_404(base: str) -> None:
    session = log_in(base)
    for device_id in (2**63, 10**30):
        assert session.get(f"{base}/setup/phones/{device_id}.conf").status_code == 404
        removed = session.post(
            f"{base}/setup/phones/{device_id}/remove",
            data={"csrf_token": page_token(session, base + "/setup")},
        )
        assert removed.status_code == 404, device_id
    assert session.get(f"{base}/setup/phones/0.conf").status_code == 404


def test_with_wireguard_turned_off_no_phone_can_be_added(tmp_path: Path) -> None:
    config = build_config(
        {"web": {"host": "127.0.0.1"}, "wireguard": {"enabled": False}},
        data_dir=tmp_path / "data",
    )
    give_password(config.data_dir)
    with serving(config) as web:
        base = f"http://{web.address}"
        session = log_in(base)
        assert "WireGuard is turned off in the config" in session.get(base + "/setup").text
        page = add_phone(session, base, "Anna")
        assert "WireGuard is turned off (wireguard.enabled in the config)." in page.text
    with Database(config.db_path) as db:
        assert wireguard_devices(db.conn) == []
