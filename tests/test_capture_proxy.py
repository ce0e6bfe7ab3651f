"""`instaflyd proxy` as a real process: a real HTTPS client through it, a local stand-in for
Instagram, passthrough for everyone else, TLS failures, start-up errors."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers import REPO, cli_env, free_port, run_cli, wait_until, write_config
from mitmproxy import addons, options
from mitmproxy.test import taddons
from support_capture import (
    InstagramStandIn,
    recorded_requests,
    running_proxy,
    tls_through_proxy,
)

from instaflyd.capture.hosts import ALLOW_HOSTS, certificate_covers, is_api_host, is_cdn_host
from instaflyd.capture.proxy import (
    ProxyStartupError,
    StartupCheck,
    extra_options,
    proxy_options,
)
from instaflyd.config import build_config
from instaflyd.logs import setup_logging


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def wait_for(db: Path, sql: str, expected: list[tuple], timeout: float = 20) -> None:
    """The writer process commits asynchronously: poll until the store says `expected`."""
    wait_until(
        lambda: db.exists() and rows(db, sql) == expected, timeout, f"{sql} to give {expected}"
    )


@pytest.mark.slow
def test_the_proxy_captures_instagram_and_passes_everything_else_through(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    with InstagramStandIn(tmp_path / "origin") as origin:
        config = write_config(
            tmp_path / "instafly.yaml",
            {
                "data_dir": str(data),
                "proxy": {
                    "listen_host": "127.0.0.1",
                    "listen_port": port,
                    "mitmproxy_options": origin.mitmproxy_options(),
                    "box_ports_allowed": [origin.port],  # passed through, not mapped
                },
            },
        )
        with running_proxy(config, port, tmp_path / "proxy.log") as process:
            ca = data / "mitmproxy" / "mitmproxy-ca-cert.pem"
            assert ca.is_file()
            for name in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
                assert (data / "mitmproxy" / name).stat().st_mode & 0o777 == 0o600

            # A browser session, replayed by a real HTTPS client that trusts the proxy's CA.
            session = requests.Session()
            session.trust_env = False
            session.proxies = {"https": f"http://127.0.0.1:{port}"}
            statuses = []
            for request in recorded_requests():
                response = session.request(
                    request.method,
                    request.url,
                    data=request.body,
                    headers={"Cookie": request.cookie},
                    verify=str(ca),
                    timeout=30,
                )
                statuses.append(response.status_code)
            assert statuses == [200] * 11 + [404]

            # Phones fetch the CA from mitm.it through the proxy.
            onboarding = session.get(
                "http://mitm.it/cert/pem", proxies={"http": session.proxies["https"]}, timeout=30
            )
            assert onboarding.status_code == 200
            assert onboarding.content == ca.read_bytes()

            # Not Instagram: the client talks TLS with the origin itself (its own certificate).
            with tls_through_proxy(port, "localhost", origin.port, origin.ca_path) as tls:
                assert tls.getpeercert(binary_form=True) == origin.leaf_der
                tls.sendall(b"GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert tls.recv(100).startswith(b"HTTP/1.1 404 Not Found\r\n")

            # A client without our CA (like the pinning Instagram app) refuses the handshake.
            with pytest.raises(ssl.SSLCertVerificationError):
                tls_through_proxy(port, "i.instagram.com", 443, None).close()

            db = data / "instafly.db"
            wait_for(db, "SELECT host, count FROM tls_failures", [("i.instagram.com", 1)])
            wait_for(db, "SELECT COUNT(*) FROM posts WHERE image_sha256 IS NOT NULL", [(4,)])
        assert process.returncode == 0

    assert rows(db, "SELECT COUNT(*) FROM posts") == [(32,)]
    assert rows(db, "SELECT id, like_count, follower_count FROM labelled_posts ORDER BY id") == [
        ("2317006284167526179", 808778, 122620202),
        ("2809059524532288506", 983180, 52979346),
        ("2831580432341165696", 3307385, 52979346),
    ]
    counters = dict(rows(db, "SELECT name, value FROM counters"))
    assert counters == {
        # 12 Instagram responses and mitm.it; the passthrough connection is no flow at all:
        # the proxy never saw inside it.
        "flows": 13,
        "instagram_json": 5,
        "posts_new": 32,
        "posts_updated": 2,
        "images_stored": 5,
    }
    log = (tmp_path / "proxy.log").read_text()
    assert re.search(rf"proxy listening on 127\.0\.0\.1:{port} \(regular mode\)", log), log
    assert "Traceback" not in log
    # Privacy: the client's cookie and request body are nowhere under data_dir.
    for path in data.rglob("*"):
        if path.is_file():
            assert b"sEcReTcOoKiEvAlUe" not in path.read_bytes(), path
            assert b"SeCrEtRequestBodyToken" not in path.read_bytes(), path


@pytest.mark.slow
def test_proxy_auth_turns_away_clients_without_the_password(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "proxy": {"listen_host": "127.0.0.1", "listen_port": port, "auth": "family:s3cret"},
        },
    )
    with running_proxy(config, port, tmp_path / "proxy.log"):
        session = requests.Session()
        session.trust_env = False
        url = "http://mitm.it/cert/pem"
        anonymous = session.get(url, proxies={"http": f"http://127.0.0.1:{port}"}, timeout=30)
        assert anonymous.status_code == 407
        wrong = session.get(url, proxies={"http": f"http://family:guess@127.0.0.1:{port}"})
        assert wrong.status_code == 407
        family = session.get(url, proxies={"http": f"http://family:s3cret@127.0.0.1:{port}"})
        assert family.status_code == 200
        assert family.content.startswith(b"-----BEGIN CERTIFICATE-----")


@pytest.mark.slow
def test_a_port_in_use_is_a_one_line_startup_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(
            tmp_path / "instafly.yaml",
            {
                "data_dir": str(tmp_path / "data"),
                "proxy": {"listen_host": "127.0.0.1", "listen_port": port},
            },
        )
        result = run_cli("proxy", config=config, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"instaflyd: proxy: cannot start: HTTP(S) proxy failed to listen on 127.0.0.1:{port} with"
        f" [Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): address"
        " already in use (another program uses this port: stop it or set proxy.listen_port)"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["transparent"])  # WireGuard: tests/test_wireguard_*.py
def test_the_other_modes_start_and_stop_cleanly(tmp_path: Path, mode: str) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "proxy": {"mode": mode, "listen_host": "127.0.0.1", "listen_port": port},
        },
    )
    log = tmp_path / "proxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "instaflyd", "--config", str(config), "proxy"],
            stdout=output, stderr=subprocess.STDOUT, env=cli_env(), cwd=REPO,
        )  # fmt: skip
        try:
            listening = f"proxy listening on 127.0.0.1:{port} ({mode} mode)"
            wait_until(lambda: listening in log.read_text(), 60, listening, process=process,
                       output=log.read_text)  # fmt: skip
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert process.returncode == 0


@pytest.mark.slow
def test_an_option_mitmproxy_rejects_is_a_one_line_startup_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "instafly.yaml",
        {"proxy": {"listen_port": free_port(), "mitmproxy_options": {"connection_strategy": 5}}},
    )
    result = run_cli("proxy", config=config, data_dir=tmp_path / "data", timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "instaflyd: proxy: cannot start: mitmproxy rejected an option: Expected <class 'str'>"
        " for connection_strategy, but got <class 'int'>."
    ]


def test_a_bad_mode_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "instafly.yaml", {"proxy": {"mode": "socks5"}})
    result = run_cli("proxy", config=config, data_dir=tmp_path / "data")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"instaflyd: config error: {config} line 2: proxy -> mode: must be one of 'regular',"
        " 'transparent' or 'wireguard' (got 'socks5')"
    )


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["regular", "transparent", "wireguard"])
def test_proxy_options_follow_the_config(tmp_path: Path, mode: str) -> None:
    config = build_config(
        {"proxy": {"mode": mode, "listen_port": 9090, "auth": "family:s3cret"}}, tmp_path
    )
    assert proxy_options(config) == {
        "mode": [] if mode == "wireguard" else [f"{mode}@9090"],  # + one listener per phone
        "listen_host": "0.0.0.0",
        "listen_port": 9090,
        "allow_hosts": ALLOW_HOSTS,
        "confdir": str(tmp_path / "mitmproxy"),
        "proxyauth": "family:s3cret",
        "stream_large_bodies": "25000000",
        "connection_strategy": "lazy",
    }


@pytest.mark.parametrize(
    ("hostport", "decrypted"),
    [
        ("www.instagram.com:443", True),
        ("instagram.com:443", True),
        ("i.instagram.com:443", True),
        ("scontent-cdt1-1.cdninstagram.com:443", True),
        ("instagram.fplm3-1.fna.fbcdn.net:443", True),
        ("mitm.it:80", True),
        ("www.instagram.com.evil.example:443", False),
        ("notinstagram.com:443", False),
        ("instagram.com:443.example.net:443", False),
        ("www.google.com:443", False),
        ("localhost:8443", False),
        ("157.240.1.174:443", False),
    ],
)
def test_allow_hosts_decrypts_only_instagram(hostport: str, decrypted: bool) -> None:
    # mitmproxy 11 matches each pattern with re.search on "host:port" strings.
    assert any(re.search(p, hostport, re.IGNORECASE) for p in ALLOW_HOSTS) is decrypted


@pytest.mark.parametrize(
    ("names", "host", "covered"),
    [
        (["www.instagram.com"], "www.instagram.com", True),
        (["www.instagram.com"], "WWW.Instagram.com.", True),
        (["*.instagram.com"], "i.instagram.com", True),
        (["*.instagram.com"], "instagram.com", False),  # a wildcard is one whole label
        (["*.instagram.com"], "a.b.instagram.com", False),
        (["*.fplm3-1.fna.fbcdn.net"], "instagram.fplm3-1.fna.fbcdn.net", True),
        (["*.fna.fbcdn.net"], "instagram.fplm3-1.fna.fbcdn.net", False),
        (["*.instagram.com"], "www.instagram.com.evil.example", False),
        (["evil.example", "*.example"], "www.instagram.com", False),
        (["*"], "localhost", False),
        ([], "www.instagram.com", False),
    ],
)
def test_certificate_covers(names: list[str], host: str, covered: bool) -> None:
    assert certificate_covers(names, host) is covered


def test_host_classes() -> None:
    assert is_api_host("WWW.Instagram.com") and is_api_host("i.instagram.com.")
    assert not is_api_host("scontent.cdninstagram.com") and not is_api_host("xinstagram.com")
    assert is_cdn_host("scontent-cdt1-1.cdninstagram.com") and is_cdn_host("x.fna.fbcdn.net")
    assert not is_cdn_host("www.instagram.com") and not is_cdn_host("fbcdn.net.example")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"map_remot": []}, "proxy -> mitmproxy_options -> map_remot: not a mitmproxy option;"
         " did you mean 'map_remote'?"),
        ({"allow_hosts": [".*"]}, "proxy -> mitmproxy_options -> allow_hosts: cannot be set here;"
         " Instafly decrypts Instagram's hosts only"),
        ({"save_stream_file": "all.flows"}, "proxy -> mitmproxy_options -> save_stream_file: not"
         " allowed: it would store whole flows, cookies included"),
        ({"listen_port": 1}, "proxy -> mitmproxy_options -> listen_port: cannot be set here;"
         " set proxy.listen_port"),
        ({"ssl_insecure": True}, "proxy -> mitmproxy_options -> ssl_insecure: cannot be set"
         " here; capture believes only upstream certificates that mitmproxy verified"),
    ],
)  # fmt: skip
def test_mitmproxy_options_are_checked(tmp_path: Path, extra: dict, message: str) -> None:
    config = build_config({"proxy": {"mitmproxy_options": extra}}, tmp_path)
    with pytest.raises(ProxyStartupError) as error:
        extra_options(config, every_mitmproxy_option())
    assert str(error.value) == message


def test_known_mitmproxy_options_pass(tmp_path: Path) -> None:
    extra = {"map_remote": ["|a|b"], "connection_strategy": "lazy", "anticache": True}
    config = build_config({"proxy": {"mitmproxy_options": extra}}, tmp_path)
    assert extra_options(config, every_mitmproxy_option()) == extra


def every_mitmproxy_option() -> options.Options:
    """mitmproxy's options as the proxy has them: those of every default addon loaded."""
    with taddons.context(*addons.default_addons(), loadcore=False) as context:
        return context.options


def test_only_mitmproxys_errors_stop_the_start_up_never_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instafly = logging.getLogger("instafly")
    for name in ("handlers", "propagate", "level"):
        monkeypatch.setattr(instafly, name, getattr(instafly, name))
    setup_logging("info", "proxy")  # what `instaflyd proxy` does first
    check = StartupCheck()
    try:
        logging.getLogger("instafly.capture").error("a parse error while starting")
        asyncio.run(check.shutdown_if_errored())  # nothing to stop for
        logging.getLogger("mitmproxy.proxy.server").error("[Errno 13] cannot bind\nTry this")
        with pytest.raises(ProxyStartupError) as error:
            asyncio.run(check.shutdown_if_errored())
        assert str(error.value) == "cannot bind"
    finally:
        check.finish()
    assert not check.starting
