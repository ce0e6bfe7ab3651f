"""Attacks on the status page from the LAN and from web sites, performed for real.

Each test serves the real app with the real waitress set-up on loopback (or runs the real
`instaflyd run`), sends the attacker's requests over real sockets, and checks the outcome:
refused, counted, nothing changed, and the page still answering everyone else. Loopback has the
whole of 127.0.0.0/8, so 127.0.0.2 plays a second device on the LAN.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import os
import pty
import re
import select
import socket
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import REPO, cli_env, free_port, run_cli, wait_until, write_config
from support_daemon import (
    TEST_PASSWORD,
    give_password,
    http_get,
    running_daemon,
    seed_extras,
    seed_store,
)
from support_web import form_token, log_in, serving

from instaflyd.config import Config, ConfigError, build_config, load_config
from instaflyd.network import lan_address
from instaflyd.store import Database
from instaflyd.store.events import add_to_counter
from instaflyd.store.jobs import get_job
from instaflyd.web import create_app, create_safe_mode_app, server
from instaflyd.web.pages import qr_svg
from instaflyd.web.password import PASSWORD_FILE, PasswordHash, announce_password
from instaflyd.web.server import WebServer

ATTACKER = "127.0.0.1"
NEIGHBOUR = "127.0.0.2"  # another device on the LAN: never slowed down by the attacker


# --- serving the real app over real sockets ------------------------------------------------------


def make_config(data_dir: Path, **web: Any) -> Config:
    return build_config(
        {
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
            "web": {"host": "127.0.0.1", **web},
        },
        data_dir=data_dir,
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "data", allowed_hosts=["instafly.lan"])
    seed_store(config.data_dir, posts=4, owners=2)
    give_password(config.data_dir)
    return config


@pytest.fixture
def web(config: Config) -> Iterator[WebServer]:
    with serving(config) as web:
        yield web


def port_of(web: WebServer) -> int:
    return int(web.address.rsplit(":", 1)[1])


def basic(password: str = TEST_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"x:{password}".encode()).decode()}


def send(
    web: WebServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    source: str = ATTACKER,
    timeout: float = 10,
) -> tuple[int, dict[str, str], str]:
    """One real HTTP request from `source`; `headers` may forge Host."""
    headers = dict(headers or {})
    headers.setdefault("Host", f"127.0.0.1:{port_of(web)}")
    if body is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    conn = http.client.HTTPConnection(
        "127.0.0.1", port_of(web), timeout=timeout, source_address=(source, 0)
    )
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def browser_session(web: WebServer, password: str = TEST_PASSWORD) -> requests.Session:
    """A browser that logged in through the form (same-origin, with its CSRF token)."""
    return log_in(f"http://127.0.0.1:{port_of(web)}", password)


def job_state(config: Config, job_id: int) -> str:
    with Database(config.db_path) as db:
        return get_job(db.conn, job_id).state


# --- 5: DNS rebinding and cross-site requests -----------------------------------------------------


def test_a_forged_host_is_refused_before_any_route_runs(web: WebServer) -> None:
    port = port_of(web)
    for host in (
        "attacker.example",
        f"attacker.example:{port}",
        f"127.0.0.1.attacker.example:{port}",
        "evil.example.",
        "instafly.lan.attacker.example",
        "",
    ):
        for path in ("/api/status", "/", "/setup", "/login", "/metrics", "/healthz"):
            code, _, body = send(web, "GET", path, {"Host": host, **basic()})
            assert code == 421, (host, path)
            assert "web.allowed_hosts" in body and "user0" not in body
            assert "attacker" not in body and "evil" not in body  # the name is not echoed
    # The box's own names and addresses, with the right password, are answered.
    own = [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "instafly.lan",
           f"INSTAFLY.LAN:{port}", f"{socket.gethostname()}:{port}", f"{lan_address()}:{port}"]  # fmt: skip
    for host in own:
        code, _, body = send(web, "GET", "/api/status", {"Host": host, **basic()})
        assert code == 200, host
        assert '"posts":4' in body.replace(" ", "")


def test_a_rebound_name_cannot_start_training_or_retry_a_job(
    config: Config, web: WebServer
) -> None:
    jobs = seed_extras(config.data_dir, config.watch.drop_dir, config.watch.output_dir)
    rejected = jobs["rejected"]
    browser = browser_session(web)
    base = f"http://127.0.0.1:{port_of(web)}"
    token = form_token(browser, base + "/")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    form = f"csrf_token={token}"
    forged = [
        # DNS rebinding: the attacker's page, same-origin under its own name.
        {"Host": "evil.example", "Origin": "http://evil.example"},
        # Cross-site: the box's address, from another site's page (or a sandboxed frame).
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://evil.example:{port_of(web)}"},
        {"Referer": "http://evil.example/page.html"},
        {"Origin": "file://"},
    ]
    for headers in forged:
        for path in (f"/actions/retry/{rejected}", "/actions/train", "/logout"):
            code, _, _ = send(web, "POST", path, {"Cookie": cookie, **headers}, body=form)
            assert code in (403, 421), (headers, path)
    assert job_state(config, rejected) == "rejected"  # nothing changed
    assert browser.get(base + "/api/status").status_code == 200  # still logged in

    # The page's own form, with its own Origin, works.
    code, headers, _ = send(
        web, "POST", f"/actions/retry/{rejected}", {"Cookie": cookie, "Origin": base}, body=form
    )
    assert (code, headers["Location"]) == (302, "/#drop")
    assert job_state(config, rejected) == "queued"


def test_the_set_up_link_and_qr_code_use_the_box_address_not_the_host_header(
    config: Config, web: WebServer
) -> None:
    expected = f"http://{lan_address()}:{config.web.port}/setup"
    for host in ("localhost", "instafly.lan", f"127.0.0.1:{port_of(web)}"):
        code, _, html = send(web, "GET", "/setup", {"Host": host})
        assert code == 200
        assert expected in html and f"http://{host}" not in html
        assert str(qr_svg(expected)) in html  # the QR code encodes the same address
        code, _, body = send(web, "GET", "/api/status", {"Host": host, **basic()})
        assert code == 200 and f'"setup_url":"{expected}"' in body.replace(" ", "")
    code, _, html = send(web, "GET", "/setup", {"Host": "evil.example"})
    assert code == 421 and "<svg" not in html


# --- 6: password guessing -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_burst_of_guesses_gets_only_a_few_checked(web: WebServer) -> None:
    """8 threads guessing over HTTP basic auth for 5 s: fewer than 20 guesses are checked."""
    answers: Counter[int] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + 5

    def guess(thread: int) -> None:
        n = 0
        while time.monotonic() < stop:
            code, _, _ = send(web, "GET", "/api/status", basic(f"guess-{thread}-{n}"), timeout=5)
            with lock:
                answers[code] += 1
            n += 1

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    checked, refused = answers[401], answers[429]
    assert set(answers) == {401, 429}
    assert 5 < checked < 20  # the free tries, then one guess per doubling delay
    assert refused > 10 * checked  # the rest refused at once, without scrypt
    assert web.guard.refused == 0  # throttled, not turned away at the door

    # Another device on the LAN gets in at once with the right password.
    assert send(web, "GET", "/api/status", basic(), source=NEIGHBOUR)[0] == 200
    # The guesser, even with the right password, waits out its delay first...
    code, headers, _ = send(web, "GET", "/api/status", basic())
    assert code == 429
    wait = int(headers["Retry-After"])
    assert 1 <= wait <= 60
    time.sleep(wait + 0.2)
    # ...and then the right password works again, and its count starts afresh.
    assert send(web, "GET", "/api/status", basic())[0] == 200
    assert send(web, "GET", "/api/status", basic("wrong again"))[0] == 401


def test_the_login_form_and_basic_auth_share_one_growing_delay_per_client(
    web: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("instaflyd.web.throttle.FIRST_DELAY", 30.0)  # no race with the clock
    base = f"http://127.0.0.1:{port_of(web)}"
    guesser = requests.Session()
    guesser.headers["Origin"] = base
    token = form_token(guesser, base + "/login")

    def try_form(password: str) -> requests.Response:
        return guesser.post(
            base + "/login", data={"password": password, "csrf_token": token},
            allow_redirects=False,
        )  # fmt: skip

    for n in range(6):  # five free tries, and the sixth, which starts the delay
        response = try_form(f"wrong-{n}")
        assert response.status_code == 200 and "Wrong password." in response.text
    refused = try_form(TEST_PASSWORD)  # even the right password waits now
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) in range(28, 31)
    assert "Too many wrong passwords: try again in" in refused.text
    assert guesser.get(base + "/api/status").status_code == 401  # not logged in
    # The same client over HTTP basic auth: the same delay.
    assert send(web, "GET", "/api/status", basic())[0] == 429
    # Another client is not slowed down at all.
    assert send(web, "GET", "/api/status", basic(), source=NEIGHBOUR)[0] == 200
    assert web.app.config["INSTAFLY_THROTTLE"].refused == 2


# --- 7: sessions end with log-out and with a password change --------------------------------------


@pytest.mark.slow
def test_a_kept_cookie_stops_working_after_logout_and_after_a_password_change(
    config: Config, web: WebServer, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{port_of(web)}"
    browser = browser_session(web)
    kept = browser.cookies.get("instafly_session")
    assert browser.get(base + "/api/status").status_code == 200
    token = form_token(browser, base + "/")
    assert browser.post(base + "/logout", data={"csrf_token": token},
                        allow_redirects=False).status_code == 302  # fmt: skip
    code, _, _ = send(web, "GET", "/api/status", {"Cookie": f"instafly_session={kept}"})
    assert code == 401  # the copy kept from before the log-out is refused
    code, headers, _ = send(web, "GET", "/", {"Cookie": f"instafly_session={kept}"})
    assert code == 302 and "/login" in headers["Location"]

    # Log in again on two devices, then change the password with the real command.
    phone, laptop = browser_session(web), browser_session(web)
    kept = phone.cookies.get("instafly_session")
    config_file = write_config(tmp_path / "cli.yaml", {"data_dir": str(config.data_dir)})
    changed = run_cli("password", config=config_file, input="a-new-password-77\n", timeout=60)
    assert changed.returncode == 0, changed.stderr
    assert "every log-in made with the old one has ended" in changed.stderr
    for cookie in (kept, laptop.cookies.get("instafly_session")):
        code, _, _ = send(web, "GET", "/api/status", {"Cookie": f"instafly_session={cookie}"})
        assert code == 401
    assert send(web, "GET", "/api/status", basic())[0] == 401  # the old password is gone
    assert send(web, "GET", "/api/status", basic("a-new-password-77"))[0] == 200
    kept_file = config.data_dir / PASSWORD_FILE
    assert kept_file.stat().st_mode & 0o777 == 0o600
    assert "a-new-password-77" not in kept_file.read_text()
    assert PasswordHash.decode(kept_file.read_text()).matches("a-new-password-77")


# --- 8: idle and half-sent connections ------------------------------------------------------------


@pytest.mark.slow
def test_150_half_sent_requests_do_not_stop_healthz(
    web: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEADER_SECONDS", 2.0)
    port = port_of(web)
    sockets = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(sock)
        started = time.monotonic()
        code, _, body = send(web, "GET", "/healthz", source=NEIGHBOUR, timeout=5)
        assert code == 200 and '"status":"ok"' in body.replace(" ", "")
        assert time.monotonic() - started < 5
        # The attacker keeps PER_CLIENT_CONNECTIONS; the rest were closed as they came.
        assert web.guard.refused == 150 - server.PER_CLIENT_CONNECTIONS
        # The ones it kept are closed too once their headers are late.
        wait_until(lambda: web.guard.timed_out == server.PER_CLIENT_CONNECTIONS, 15, "timeouts")
        closed = sum(1 for sock in sockets if _closed(sock))
        assert closed == 150
        # And the attacker's address is served again like anyone's.
        assert send(web, "GET", "/healthz")[0] == 200
    finally:
        for sock in sockets:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    try:
        sock.settimeout(5)
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# --- 9 and 10: the password on disk, secrets in messages, file modes ------------------------------


def test_the_first_password_is_random_shown_once_and_kept_only_as_a_hash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    with caplog.at_level("WARNING", logger="instafly.web"):
        announce_password(data, None, None)
        announce_password(data, None, None)  # the second start shows nothing
    [shown] = [r.getMessage() for r in caplog.records if "password is" in r.getMessage()]
    password = re.search(r"password is (\S+) \(shown only this once", shown).group(1)
    assert re.fullmatch(r"[a-z2-9]{5}(-[a-z2-9]{5}){3}", password)
    kept = data / PASSWORD_FILE
    assert kept.stat().st_mode & 0o777 == 0o600
    assert password not in kept.read_text() and kept.read_text().startswith("scrypt$16384$8$1$")
    assert PasswordHash.decode(kept.read_text()).matches(password)
    assert not PasswordHash.decode(kept.read_text()).matches(password.upper())
    # Nothing kept and nothing configured: nobody gets in (never an open page).
    empty = make_config(tmp_path / "empty")
    client = create_app(empty).test_client()
    assert client.get("/api/status", headers=basic("")).status_code == 401


def test_a_config_password_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = write_config(tmp_path / "x.yaml", {"web": {"password": "scripted-secret"}})
    file.chmod(0o644)
    with caplog.at_level("WARNING", logger="instafly.web"):
        announce_password(tmp_path / "data", "scripted-secret", file)
        file.chmod(0o600)
        announce_password(tmp_path / "data", "scripted-secret", file)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"web.password is in {file}, which other users of this box can read: chmod 600 it, "
        "or remove the key and use 'instaflyd password'"
    ]
    assert not (tmp_path / "data" / PASSWORD_FILE).exists()  # the config's password is the one


@pytest.mark.slow
def test_instaflyd_password_refuses_bad_input_and_init_prints_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config_file = write_config(tmp_path / "c.yaml", {"data_dir": str(data)})
    first = run_cli("password", "--init", config=config_file, timeout=60)
    assert first.returncode == 0 and re.fullmatch(r"[a-z2-9-]{23}\n", first.stdout)
    again = run_cli("password", "--init", config=config_file, timeout=60)
    assert (again.returncode, again.stdout) == (0, "")
    before = (data / PASSWORD_FILE).read_text()
    short = run_cli("password", config=config_file, input="short\n", timeout=60)
    assert short.returncode == 1
    assert short.stderr == (
        "instaflyd: the password must have at least 8 characters; nothing changed\n"
    )
    assert (data / PASSWORD_FILE).read_text() == before
    scripted = write_config(
        tmp_path / "s.yaml", {"data_dir": str(data), "web": {"password": "in-the-file"}}
    )
    refused = run_cli("password", config=scripted, input="long-enough-1\n", timeout=60)
    assert refused.returncode == 1 and "takes precedence" in refused.stderr
    assert (data / PASSWORD_FILE).read_text() == before


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("proxy", "auth", 91827364),
        ("proxy", "auth", ["admin", "91827364"]),
        ("web", "password", 91827364),
        ("web", "password", {"91827364": 1}),
    ],
)
def test_secret_values_never_appear_in_config_messages(
    tmp_path: Path, section: str, key: str, value: Any
) -> None:
    file = write_config(tmp_path / "bad.yaml", {section: {key: value}, "web_typo": 1})
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    problems = caught.value.problems
    assert any(f"{section} -> {key}" in p and "(value hidden: a secret)" in p for p in problems)
    assert all("91827364" not in p for p in problems)
    # ...nor in check-config's output (one real run is enough), nor on the safe-mode page.
    if isinstance(value, list):
        check = run_cli("check-config", config=file)
        assert check.returncode == 1 and "value hidden" in check.stderr
        assert "91827364" not in check.stderr + check.stdout
    page = create_safe_mode_app(problems, file).test_client().get("/")
    assert page.status_code == 503 and b"91827364" not in page.data
    # Problems from anywhere else are hidden by key on the page too.
    other = [f"x.yaml line 2: {section} -> {key}: must be text (got '91827364')"]
    page = create_safe_mode_app(other, file).test_client().get("/")
    assert b"91827364" not in page.data and b"value hidden: a secret" in page.data


def test_the_data_dir_and_database_are_private_outside_systemd(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    with Database(data / "instafly.db") as db, db.transaction() as conn:
        add_to_counter(conn, "flows", 1)
        for name in ("instafly.db", "instafly.db-wal"):
            assert (data / name).stat().st_mode & 0o777 == 0o600, name
    assert data.stat().st_mode & 0o777 == 0o750
    # A database an older version left world-readable is tightened when opened.
    (data / "instafly.db").chmod(0o644)
    Database(data / "instafly.db").close()
    assert (data / "instafly.db").stat().st_mode & 0o777 == 0o600


# --- against the real daemon ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_daemon_from_a_fresh_data_dir(tmp_path: Path) -> None:
    """`instaflyd run` on an empty data dir: a password is made and shown once; every attack
    above fails against it; the daemon keeps answering."""
    data = tmp_path / "data"
    web_port, proxy_port = free_port(), free_port()
    config = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(data),
            "proxy": {"listen_host": "127.0.0.1", "listen_port": proxy_port},
            "web": {"host": "127.0.0.1", "port": web_port},
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
        },
    )
    url = f"http://127.0.0.1:{web_port}"
    with running_daemon(config, data, web_port, proxy_port) as daemon:
        shown = wait_until(
            lambda: re.search(r"password is (\S+) \(shown only this once", daemon.output()),
            10,
            "the password in the log",
        )
        password = shown.group(1)
        assert daemon.output().count(password) == 1
        assert (data / PASSWORD_FILE).stat().st_mode & 0o777 == 0o600
        assert password not in (data / PASSWORD_FILE).read_text()
        assert data.stat().st_mode & 0o777 == 0o750
        assert (data / "instafly.db").stat().st_mode & 0o777 == 0o600

        assert http_get(url + "/api/status")[0] == 401
        assert http_get(url + "/api/status", password="not-it")[0] == 401
        assert http_get(url + "/api/status", password=password)[0] == 200
        assert http_get(url + "/healthz")[0] == 200  # public
        # DNS rebinding, with the right password even: refused.
        assert http_get(url + "/api/status", password=password, Host="attacker.example")[0] == 421
        # 150 half-sent requests from one address: /healthz answers another at once.
        sockets = []
        try:
            for _ in range(150):
                sock = socket.create_connection(("127.0.0.1", web_port), timeout=5)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                sockets.append(sock)
            conn = http.client.HTTPConnection(
                "127.0.0.1", web_port, timeout=5, source_address=(NEIGHBOUR, 0)
            )
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
            conn.close()
        finally:
            for sock in sockets:
                sock.close()
        # A new password from stdin takes effect in the running daemon at once.
        changed = run_cli("password", config=config, input="second-password-55\n", timeout=60)
        assert changed.returncode == 0, changed.stderr
        assert http_get(url + "/api/status", password=password)[0] == 401
        assert http_get(url + "/api/status", password="second-password-55")[0] == 200
        assert daemon.stop() == 0
    # The second start shows no password: it was shown once.
    with running_daemon(config, data, web_port, proxy_port) as again:
        assert http_get(url + "/api/status", password="second-password-55")[0] == 200
        assert "shown only this once" not in again.output()
        assert again.stop() == 0
    assert os.stat(data / PASSWORD_FILE).st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_instaflyd_password_at_a_real_prompt(tmp_path: Path) -> None:
    """A person at a terminal: the password is typed twice, without echo, and then kept."""
    data = tmp_path / "data"
    config_file = write_config(tmp_path / "c.yaml", {"data_dir": str(data)})
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "instaflyd", "--config", str(config_file), "password"],
        stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=cli_env(),
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the pty is its terminal
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def read_until(text: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while text not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 1024)
        assert text in seen, seen

    try:
        read_until(b"New password for the status page: ")
        os.write(master, b"typed-at-a-prompt-9\n")
        read_until(b"The same again: ")
        os.write(master, b"typed-at-a-prompt-9\n")
        assert process.wait(60) == 0
        with contextlib.suppress(OSError):  # the pty reads EIO once the child has gone
            while select.select([master], [], [], 0.5)[0] and (chunk := os.read(master, 1024)):
                seen += chunk
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    assert b"typed-at-a-prompt-9" not in seen  # never echoed
    assert b"password changed" in seen
    kept = PasswordHash.decode((data / PASSWORD_FILE).read_text())
    assert kept.matches("typed-at-a-prompt-9")
