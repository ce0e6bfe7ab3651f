"""The capture addon inside mitmproxy's own test harness (taddons, tflow), with a real writer
process, a real SQLite store and real image files."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FIXTURES, jpeg_bytes, wait_until
from mitmproxy import connection, http, tls
from mitmproxy.addons.mapremote import MapRemote
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.test import taddons, tflow
from support_capture import as_verified_tls

from instaflyd import shutdown
from instaflyd.capture.addon import CaptureAddon
from instaflyd.capture.flows import captured_response
from instaflyd.capture.parsers import parse_document
from instaflyd.capture.writer import CaptureWriter, write_until_stopped
from instaflyd.config import Config, build_config

SAMPLES = FIXTURES / "instagram"
PROFILE_URL = "https://www.instagram.com/api/v1/users/web_profile_info/?username=robertdowneyjr"
SIDECAR = "279923746_752618449450106_6016545400124263448_n.jpg"  # post CdLy2aepGaA
SIDECAR_ID = "2831580432341165696"
CDN = "https://scontent-cdt1-1.cdninstagram.com/v/t51.2885-15/"
USERS_INFO_ID = "1518284433"
USERS_INFO_URL = f"https://i.instagram.com/api/v1/users/{USERS_INFO_ID}/info/"
USERS_INFO_ACCOUNT = ("robertdowneyjr", 50857062)
COOKIE = "sessionid=addon-test-SECRET-cookie-7731"
REQUEST_BODY = b"variables=addon-test-SECRET-body-5512"


def make_flow(
    url: str,
    body: bytes,
    content_type: str,
    status: int = 200,
    encoding: str | None = None,
    method: str = "GET",
) -> http.HTTPFlow:
    request = http.Request.make(method, url, REQUEST_BODY, {"Cookie": COOKIE})
    response = http.Response.make(status, body, {"Content-Type": content_type})
    if encoding:
        response.encode(encoding)
    return as_verified_tls(tflow.tflow(req=request, resp=response))


def profile_flow() -> http.HTTPFlow:
    body = (SAMPLES / "pgrimaud/web_profile_info_2022-06_full.json").read_bytes()
    return make_flow(PROFILE_URL, body, "application/json; charset=utf-8", encoding="gzip")


def image_flow(width: int, height: int, status: int = 200, path: str = "") -> http.HTTPFlow:
    return make_flow(
        CDN + path + SIDECAR + "?stp=dst-jpg", jpeg_bytes(width, height), "image/jpeg", status
    )


@pytest.fixture(autouse=True)
def _instafly_logs_stay_out_of_mitmproxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the proxy (setup_logging): the writer's log records must not reach the
    root logger, where mitmproxy's handlers forward them to its event loop."""
    monkeypatch.setattr(logging.getLogger("instafly"), "propagate", False)


# The writer runs at idle priority: on a loaded machine it may get no CPU for many seconds.
# Tests wait for what it does (a row, its exit), up to this long, never for a fixed time.
WRITER_PATIENCE_SECONDS = 300.0


@pytest.fixture(autouse=True)
def _the_writer_may_take_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`CaptureWriter.stop()` waits for the writer's end up to the process's shutdown budget
    (18 s by default): here it waits for that end however long a loaded machine makes it.
    The budget itself is tests/test_shutdown.py's business."""
    monkeypatch.setenv(shutdown.ENV, f"{WRITER_PATIENCE_SECONDS + shutdown.PROXY_SHARE:g}")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return build_config({"data_dir": str(tmp_path / "data")})


@pytest.fixture
def writer(config: Config) -> Iterator[CaptureWriter]:
    writer = CaptureWriter(config)
    writer.start()
    yield writer
    writer.stop()


def run_flows(addon: CaptureAddon, *flows: http.HTTPFlow, map_remote: list[str] = ()) -> None:
    """Every flow's events through mitmproxy's addon manager, map_remote first as in the proxy."""

    async def play() -> None:
        with taddons.context(MapRemote(), addon) as context:
            context.options.update(map_remote=list(map_remote))
            for flow in flows:
                response, flow.response = flow.response, None  # not there before `request`
                for hook in (http_layer.HttpRequestHeadersHook, http_layer.HttpRequestHook):
                    await context.master.addons.handle_lifecycle(hook(flow))
                flow.response = response
                for hook in (http_layer.HttpResponseHeadersHook, http_layer.HttpResponseHook):
                    await context.master.addons.handle_lifecycle(hook(flow))

    asyncio.run(play())


def store(config: Config) -> sqlite3.Connection:
    conn = sqlite3.connect(config.db_path)
    conn.row_factory = sqlite3.Row
    return conn


def counters(config: Config) -> dict[str, int]:
    return dict(store(config).execute("SELECT name, value FROM counters").fetchall())


def cover_size(config: Config, post_id: str) -> tuple[int, int] | None:
    row = (
        store(config)
        .execute(
            "SELECT i.width, i.height FROM posts p JOIN images i ON i.sha256 = p.image_sha256"
            " WHERE p.id = ?",
            (post_id,),
        )
        .fetchone()
    )
    return None if row is None else (row[0], row[1])


def test_an_image_before_its_json_is_attached_when_the_json_arrives(
    config: Config, writer: CaptureWriter
) -> None:
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, image_flow(48, 60, path="s320x320/"), profile_flow())
    writer.stop()
    assert cover_size(config, SIDECAR_ID) == (48, 60)
    post = store(config).execute("SELECT * FROM posts WHERE id = ?", (SIDECAR_ID,)).fetchone()
    assert (post["shortcode"], post["media_type"], post["like_count"]) == (
        "CdLy2aepGaA",
        "carousel",
        3307385,
    )
    account = store(config).execute("SELECT * FROM accounts WHERE id = '1518284433'").fetchone()
    assert (account["username"], account["follower_count"]) == ("robertdowneyjr", 52979346)
    assert counters(config) == {
        "flows": 2,
        "instagram_json": 1,
        "posts_new": 20,
        "images_stored": 1,
    }


@pytest.mark.slow
def test_the_largest_variant_is_kept_whatever_the_order(
    config: Config, writer: CaptureWriter
) -> None:
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, profile_flow(), image_flow(64, 80), image_flow(32, 40), image_flow(96, 120))
    writer.stop()
    assert cover_size(config, SIDECAR_ID) == (96, 120)
    assert counters(config)["images_stored"] == 2  # 64x80, then 96x120; 32x40 never stored
    # The replaced 64x80 variant is gone from the table and the folder: only what posts use stays.
    [(sha256, width)] = store(config).execute("SELECT sha256, width FROM images").fetchall()
    assert width == 96
    assert [p.name for p in config.images_dir.rglob("*.jpg")] == [f"{sha256}.jpg"]


@pytest.mark.slow
def test_error_pages_and_non_images_from_the_cdn_never_become_images(
    config: Config, writer: CaptureWriter
) -> None:
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    html = b"<!DOCTYPE html><html><body>Sorry, this page isn't available.</body></html>"
    run_flows(
        addon,
        profile_flow(),
        make_flow(CDN + SIDECAR, html, "text/html"),  # not even handed to the writer
        make_flow(CDN + SIDECAR, html, "image/jpeg"),  # says JPEG, is not
        make_flow(CDN + SIDECAR, jpeg_bytes(64, 80), "image/jpeg", status=404),
        make_flow(CDN + SIDECAR, jpeg_bytes(64, 80)[:200], "image/jpeg", status=206),
    )
    writer.stop()
    assert cover_size(config, SIDECAR_ID) is None
    assert store(config).execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0
    assert not config.images_dir.exists() or not any(config.images_dir.rglob("*.*"))
    assert counters(config)["images_rejected"] == 3


def test_a_parser_exception_is_an_event_and_the_writer_goes_on(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's loop (here in this process, so the parser can be broken for it)."""
    calls = []

    def broken_once(document: object, path: str) -> object:
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("an Instagram shape nobody expected")
        return parse_document(document, path)

    monkeypatch.setattr("instaflyd.capture.ingest.parse_document", broken_once)
    inbox: queue.Queue[object] = queue.Queue()
    for flow in (profile_flow(), profile_flow()):
        inbox.put(captured_response(flow, config.proxy.max_body_bytes))
    inbox.put(None)  # stop
    write_until_stopped(config, inbox)  # returns only if the loop survived the exception
    events = store(config).execute("SELECT component, level, kind, message FROM events").fetchall()
    assert [tuple(e) for e in events] == [
        (
            "proxy",
            "warning",
            "parse_error",
            "www.instagram.com/api/v1/users/web_profile_info/: parser failed: "
            "RuntimeError: an Instagram shape nobody expected",
        )
    ]
    assert counters(config) == {"parse_errors": 1, "instagram_json": 1, "posts_new": 20}


@pytest.mark.slow
def test_a_failing_classification_never_escapes_the_hook(
    config: Config, writer: CaptureWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr("instaflyd.capture.addon.captured_response", broken)
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, profile_flow())
    writer.stop()
    assert counters(config) == {"flows": 1}


@pytest.mark.slow
def test_a_non_json_body_from_the_api_is_a_parse_error_event(
    config: Config, writer: CaptureWriter
) -> None:
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(
        addon,
        make_flow(
            "https://i.instagram.com/api/v1/feed/timeline/",
            b"Please wait a few minutes before you try again.",
            "application/json",
        ),
        # Scripts and pages without data are not errors, just not ours.
        make_flow(
            "https://www.instagram.com/static/app.js", b"(function(){})()", "text/javascript"
        ),
        make_flow("https://www.instagram.com/", b"<html><body>Log in</body></html>", "text/html"),
        make_flow("https://i.instagram.com/api/v1/feed/timeline/", b"{}", "application/json", 429),
    )
    writer.stop()
    [event] = store(config).execute("SELECT kind, message FROM events").fetchall()
    assert event["kind"] == "parse_error"
    assert event["message"] == (
        "i.instagram.com/api/v1/feed/timeline/: not JSON: Expecting value at character 0"
    )
    assert counters(config) == {"flows": 4, "parse_errors": 1}


@pytest.mark.slow
def test_capture_classifies_by_the_host_the_client_asked_for_despite_map_remote(
    config: Config, writer: CaptureWriter
) -> None:
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    flow = profile_flow()
    run_flows(addon, flow, map_remote=["|^https://www.instagram.com/|https://127.0.0.1:9/"])
    writer.stop()
    assert flow.request.host == "127.0.0.1"  # map_remote did rewrite the request
    assert counters(config)["posts_new"] == 20


def test_a_full_pipe_drops_and_counts_instead_of_blocking(config: Config) -> None:
    """Nothing reads the pipe until the writer starts: once it is full, flows beyond the
    backlog's bound are dropped and counted, and the hook never waits. None goes missing."""
    writer = CaptureWriter(config, backlog_bytes=0)  # not started: nothing drains the pipe
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    flows = [profile_flow() for _ in range(40)]  # ~40 x 60 kB, more than a pipe holds
    run_flows(addon, *flows)  # would hang here if the hook blocked
    writer.start()
    writer.stop()
    counted = counters(config)
    assert counted["flows"] == 40
    assert counted["flows_dropped"] >= 1
    assert counted["instagram_json"] + counted["flows_dropped"] == 40


@pytest.mark.slow
def test_a_dead_writer_is_replaced_and_capture_goes_on(config: Config) -> None:
    writer = CaptureWriter(config)
    writer.start()
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, profile_flow())
    posts = "SELECT COUNT(*) FROM posts"
    wait_until(
        lambda: store(config).execute(posts).fetchone()[0] == 20,
        WRITER_PATIENCE_SECONDS,
        "20 stored posts",
    )
    dead = writer._process
    os.kill(dead.pid, signal.SIGKILL)  # an out-of-memory kill, say
    dead.join(WRITER_PATIENCE_SECONDS)
    assert dead.exitcode == -signal.SIGKILL
    users_info = (SAMPLES / "pgrimaud/users_info_v1_2021-09.json").read_bytes()
    later = make_flow(USERS_INFO_URL, users_info, "application/json")
    run_flows(addon, later)  # the write fails; a new writer takes this flow
    writer.stop()
    assert writer._process.pid != dead.pid and writer._process.exitcode == 0
    account = store(config).execute(
        "SELECT username, follower_count FROM accounts WHERE id = ?", (USERS_INFO_ID,)
    )
    assert tuple(account.fetchone()) == USERS_INFO_ACCOUNT
    assert counters(config)["flows"] == 2  # counted by the proxy, not the writer


@pytest.mark.slow
def test_tls_failures_are_counted_per_host(config: Config, writer: CaptureWriter) -> None:
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    for sni in ("i.instagram.com", "i.instagram.com", "graph.instagram.com"):
        client = connection.Client(
            peername=("192.168.1.20", 50000), sockname=("192.168.1.2", 8080), sni=sni
        )
        client.error = "The client does not trust the proxy's certificate"
        addon.tls_failed_client(tls.TlsData(client, Context(client, taddons.context().options)))
    writer.stop()
    rows = store(config).execute("SELECT host, count, last_error FROM tls_failures ORDER BY host")
    assert [tuple(row) for row in rows] == [
        ("graph.instagram.com", 1, "The client does not trust the proxy's certificate"),
        ("i.instagram.com", 2, "The client does not trust the proxy's certificate"),
    ]


def test_no_cookie_or_request_body_reaches_the_disk(config: Config, writer: CaptureWriter) -> None:
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, image_flow(48, 60), profile_flow())
    writer.stop()
    files = [path for path in config.data_dir.rglob("*") if path.is_file()]
    assert any(path.name == "instafly.db" for path in files)
    secrets = (COOKIE.split("=", 1)[1].encode(), REQUEST_BODY.split(b"=", 1)[1])
    for path in files:
        content = path.read_bytes()
        for secret in secrets:
            assert secret not in content, path
    assert counters(config)["posts_new"] == 20  # the flows were captured


def _unverified_variants() -> list[tuple[str, http.HTTPFlow]]:
    """The profile response as a LAN client could make it look, none of it proven by Instagram."""
    plain = profile_flow()
    plain.request.scheme, plain.request.port = "http", 80
    plain.client_conn.timestamp_tls_setup = plain.server_conn.timestamp_tls_setup = None
    other_sni = profile_flow()
    other_sni.client_conn.sni = "evil.example"
    no_sni = profile_flow()
    no_sni.client_conn.sni = None
    plain_upstream = profile_flow()  # TLS to the proxy, plain HTTP to the origin
    plain_upstream.server_conn.timestamp_tls_setup = None
    plain_upstream.server_conn.certificate_list = []
    not_named = profile_flow()  # the Host header names an Instagram host the certificate does not
    not_named.request.host = not_named.client_conn.sni = "www.instagram.com.evil.example"
    not_named.request.headers["Host"] = "www.instagram.com"
    return [
        ("plain HTTP", plain),
        ("SNI of another host", other_sni),
        ("no SNI", no_sni),
        ("plain HTTP upstream", plain_upstream),
        ("certificate does not name the host", not_named),
    ]


@pytest.mark.parametrize("name", [name for name, _ in _unverified_variants()])
def test_a_response_not_proven_by_instagram_over_tls_is_counted_and_never_stored(
    config: Config, writer: CaptureWriter, name: str
) -> None:
    flow = dict(_unverified_variants())[name]
    assert flow.request.pretty_host == "www.instagram.com"  # what the client wrote
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, flow)
    writer.stop()
    assert counters(config) == {"flows": 1, "flows_unverified": 1}
    assert store(config).execute("SELECT COUNT(*) FROM posts").fetchone()[0] == 0


def test_with_ssl_insecure_nothing_is_believed(config: Config, writer: CaptureWriter) -> None:
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)

    async def play() -> None:
        with taddons.context(addon) as context:
            context.options.update(ssl_insecure=True)
            addon.response(profile_flow())

    asyncio.run(play())
    writer.stop()
    assert counters(config) == {"flows": 1, "flows_unverified": 1}
