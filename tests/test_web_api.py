"""The status page's app on a seeded temp store: /api/status, /healthz, /metrics, password, CSRF."""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from helpers import jpeg_bytes
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from support_daemon import TEST_PASSWORD, UNREAD_SHAPE, give_password, seed_extras, seed_store

from instaflyd.config import Config, build_config
from instaflyd.network import lan_address
from instaflyd.repairs import Problem
from instaflyd.status.document import ComponentStatus
from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.images import record_image
from instaflyd.store.jobs import get_job
from instaflyd.store.posts import attach_image, upsert_post
from instaflyd.store.versions import (
    add_model_version,
    finish_training_run,
    record_training_progress,
    start_training_run,
)
from instaflyd.web import create_app, create_safe_mode_app
from instaflyd.web.auth import SECRET_FILE
from instaflyd.weights.file import WEIGHTS_FILE

PASSWORD = "correct horse"


def make_config(data_dir: Path, password: str | None = None) -> Config:
    return build_config(
        {
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
            "web": {"password": password},
            "train": {"min_labelled_posts": 20, "min_owners": 2},
        },
        data_dir=data_dir,
    )


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Config, dict[str, Any]]:
    config = make_config(tmp_path / "data")
    seed_store(config.data_dir, posts=12, owners=4)
    jobs = seed_extras(config.data_dir, config.watch.drop_dir, config.watch.output_dir)
    give_password(config.data_dir)  # kept the way the first start or `instaflyd password` does
    return config, jobs


def logged_in(app: Flask) -> FlaskClient:
    """A browser that logged in through the form with the kept password."""
    client = app.test_client()
    token = csrf_of(client, "/login")
    response = client.post("/login", data={"password": TEST_PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.data
    return client


@pytest.fixture
def client(seeded: tuple[Config, dict[str, Any]]) -> FlaskClient:
    return logged_in(create_app(seeded[0]))


def protected_app(config: Config) -> Flask:
    return create_app(make_config(config.data_dir, PASSWORD))


def basic(password: str) -> dict[str, str]:
    token = base64.b64encode(f"anyone:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def csrf_of(client: FlaskClient, page: str = "/") -> str:
    html = client.get(page).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# --- /api/status -----------------------------------------------------------------------------


def test_api_status_reports_the_store(client: FlaskClient, seeded: tuple[Config, Any]) -> None:
    jobs = seeded[1]
    status = client.get("/api/status").get_json()
    capture = status["capture"]
    assert capture["totals"] == {
        "flows": 321, "posts": 13, "accounts": 4, "images": 12, "labelled": 12,
    }  # fmt: skip
    assert capture["last_capture"] == 1_700_000_011
    assert capture["proxy"]["mode"] == "regular"
    assert [(t["host"], t["count"]) for t in capture["tls_failures"]] == [
        ("i.instagram.com", 3),
        ("graph.instagram.com", 1),
    ]
    assert "pins its certificates" in capture["tls_note"]
    keys = ("path", "fingerprint", "count", "first_seen", "last_seen")
    assert [tuple(f[key] for key in keys) for f in capture["unread_formats"]] == [
        ("/api/v1/feed/user/{id}/", UNREAD_SHAPE, 2, 1_699_999_100, 1_699_999_200)
    ]
    assert [e["message"] for e in capture["recent_errors"]] == [
        "upstream certificate verify failed for x.test"
    ]
    assert [p["id"] for p in capture["recent_posts"]] == [
        "5011",
        "5010",
        "5009",
        "5008",
        "5007",
        "5006",
    ]
    assert capture["recent_posts"][0]["like_count"] == 10 + 7 * 11

    model = status["model"]
    assert (model["version"], model["samples"], model["training"]["running"]) == (None, 0, False)
    assert model["next_training"]["needed"] == 8
    assert model["next_training"]["reason"] == "waiting for 8 more labelled posts (12 so far)"
    assert model["weights"]["setting"] == "none"

    drop = status["drop_folder"]
    assert drop["jobs"] == {
        "queued": 1, "waiting_model": 0, "running": 0, "done": 1, "rejected": 1, "failed": 0,
    }  # fmt: skip
    done = next(job for job in drop["recent"] if job["id"] == jobs["done"])
    assert (done["name"], done["score_change"]) == ("beach.jpg", pytest.approx(0.4))
    assert done["after"] == f"/thumbs/job/{jobs['done']}/after"
    rejected = next(job for job in drop["recent"] if job["id"] == jobs["rejected"])
    assert (rejected["retryable"], rejected["reason"]) == (True, "not an image Pillow can read")

    setup = status["setup"]
    assert setup["proxy_port"] == 8080
    assert setup["ca"]["available"] is False
    assert status["components"] == {}
    assert status["instafly"]["state"] == "standalone"


def test_api_status_shows_the_model_and_training_progress(
    client: FlaskClient, seeded: tuple[Config, Any]
) -> None:
    config, _ = seeded
    with Database(config.db_path) as db, db.transaction() as conn:
        metrics = {"val_srcc": 0.41, "val_pairwise_accuracy": 0.66}
        add_model_version(
            conn, 1, "models/v0001", 12, 12, metrics, promoted=True, now=1_700_000_500
        )
        run = start_training_run(conn, pid=1, epochs=8)  # pid 1 exists: the run counts as alive
        record_training_progress(conn, run, epoch=2, loss=0.5)
    model = client.get("/api/status").get_json()["model"]
    assert (model["version"], model["samples"], model["val_srcc"]) == (1, 12, 0.41)
    assert model["training"] == {
        "running": True, "epoch": 2, "epochs": 8, "progress": 0.25, "loss": 0.5,
        "started": model["training"]["started"],
    }  # fmt: skip
    html = client.get("/").get_data(as_text=True)
    assert '<progress id="training-progress" max="1" value="0.25"' in html
    assert "66.0%" in html


def test_the_page_lists_the_formats_not_understood_by_path_and_shape(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    table = html[html.index('<table class="table" id="unread-formats">') :]
    table = table[: table.index("</table>")]
    assert "<code>/api/v1/feed/user/{id}/</code>" in table
    assert f'<pre class="small">{UNREAD_SHAPE}</pre>' in table
    assert '<td class="num">2</td>' in table
    assert "max_id" not in html


def test_the_page_tells_the_last_training_outcome_and_the_way_to_the_first_model(
    client: FlaskClient, seeded: tuple[Config, Any]
) -> None:
    config, _ = seeded
    model = client.get("/api/status").get_json()["model"]
    assert model["last_outcome"] is None
    assert model["goal"] == {
        "first_model": True, "posts": 12, "posts_goal": 20, "owners": 4, "owners_goal": 2,
        "text": "12 of 20 labelled posts, from 4 accounts",
    }  # fmt: skip
    assert "<strong>12 of 20 labelled posts, from 4 accounts</strong>" in client.get("/").get_data(
        as_text=True
    )
    with Database(config.db_path) as db, db.transaction() as conn:
        add_model_version(
            conn, 1, "models/v0001", 12, 12, {"val_srcc": 0.41}, promoted=True, now=1_700_000_000
        )
        run = start_training_run(conn, pid=1, epochs=8, now=time.time() - 200)
        metrics = {"val_srcc": 0.38, "current_version": 1, "current_val_srcc": 0.41}
        add_model_version(
            conn, 2, "models/v0002", 12, 12, metrics, promoted=False,
            compared_version=1, compared_val_srcc=0.41,
        )  # fmt: skip
        finish_training_run(
            conn, run, "done", version=2, message="v2 not promoted", now=time.time() - 105
        )
    model = client.get("/api/status").get_json()["model"]
    outcome = model["last_outcome"]
    assert (outcome["state"], outcome["version"], outcome["promoted"]) == ("done", 2, False)
    assert (outcome["val_srcc"], outcome["current_version"], outcome["current_val_srcc"]) == (
        0.38, 1, 0.41,
    )  # fmt: skip
    assert outcome["seconds"] == pytest.approx(95, abs=0.2)
    # v2 was not better: the next run waits for twice train.min_new_posts, or an hour
    assert model["goal"]["text"] == "0 of 400 new labelled posts"
    plan = model["next_training"]
    assert (plan["not_better"], plan["posts_goal"], plan["due"]) == (1, 400, False)
    assert plan["budget"] == {
        "limit_seconds": 7200.0, "used_seconds": 0.0, "runs": 0, "free_at": None,
    }  # fmt: skip
    html = client.get("/").get_data(as_text=True)
    lesson = html[html.index('id="last-training"') :]
    lesson = lesson[: lesson.index("</div>")]
    assert "Did not do better than what the box already knew: the box keeps that." in lesson
    assert "1 min ago · took 1 min 35 s" in lesson
    assert "v2" not in lesson  # version numbers are for the Details
    raw = html[html.index('id="last-training-raw"') :]
    raw = raw[: raw.index("</dd>")]
    assert "v2 not promoted: rank correlation 0.38; v1 before: 0.41 on the same posts" in raw
    plan_html = html[html.index('id="training-plan"') :]
    plan_html = " ".join(plan_html[: plan_html.index("</div>")].split())
    assert "The last lesson did not do better." in plan_html
    assert "when 400 new labelled posts have arrived (0 so far), or in 60 min." in plan_html
    assert "Learning used 0 of its 2 hours of processor time in the last 24 hours." in plan_html


def test_the_profiles_that_would_label_the_most_posts(
    client: FlaskClient, seeded: tuple[Config, Any]
) -> None:
    config, _ = seeded
    files = ImageFiles(config.images_dir)
    with Database(config.db_path) as db, db.transaction() as conn:
        for n, owner in enumerate(["77", "77", "77", "78", "79"]):
            post = PostRecord(f"90{n}", "photo", owner=AccountRecord(owner, f"nofollowers{owner}"),
                              like_count=5)  # fmt: skip
            upsert_post(conn, post)
            stored = files.put(jpeg_bytes(96, 96, 300 + n), "jpg")
            record_image(conn, stored, 96, 96, 100)
            attach_image(conn, post.id, stored.sha256)
        upsert_post(conn, PostRecord("999", "video", owner=AccountRecord("80"), like_count=5))
        upsert_post(conn, PostRecord("998", "photo", owner=AccountRecord("81"), like_count=5))
    visit = client.get("/api/status").get_json()["capture"]["accounts_to_visit"]
    # The video and the post without an image would not become labels: not counted.
    assert visit == [
        {"id": "77", "username": "nofollowers77", "waiting": 3},
        {"id": "78", "username": "nofollowers78", "waiting": 1},
        {"id": "79", "username": "nofollowers79", "waiting": 1},
    ]
    html = client.get("/").get_data(as_text=True)
    assert '<span class="who">@nofollowers77</span>' in html
    assert "3 posts waiting" in html


# --- /healthz and /metrics ---------------------------------------------------------------------


def test_healthz_is_public_and_needs_no_database(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", PASSWORD)
    app = create_app(config)
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.get_json()) == (
        200,
        {"status": "ok", "state": "standalone"},
    )
    assert not config.db_path.exists()


def component(state: str) -> ComponentStatus:
    return ComponentStatus(state, None, 0, None, None, None, None, None)


class StalledDaemon:
    state = "running"

    def components(self) -> dict[str, ComponentStatus]:
        return {"proxy": component("degraded"), "worker": component("running")}

    def latest_status(self) -> None:
        return None

    def heartbeat_age(self) -> float:
        return 45.0

    def request_training(self) -> tuple[bool, str]:
        return False, "no"

    def problems(self) -> list[Problem]:
        return []


def test_healthz_fails_when_the_daemon_loop_is_stalled(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path / "data"), StalledDaemon())
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "stalled", "state": "running", "degraded": ["proxy"], "loop_age_seconds": 45.0,
        "problems": [],
    }  # fmt: skip


def test_metrics_are_prometheus_text_named_instafly(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }
    assert all(name.startswith("instafly_") for name, _ in samples)
    assert samples[("instafly_posts", ())] == 13
    assert samples[("instafly_labelled", ())] == 12
    assert samples[("instafly_flows_total", ())] == 321
    assert samples[("instafly_tls_failures_total", (("host", "i.instagram.com"),))] == 3
    assert samples[("instafly_jobs", (("state", "done"),))] == 1
    assert samples[("instafly_jobs", (("state", "queued"),))] == 1
    assert samples[("instafly_model_version", ())] == 0
    assert samples[("instafly_training_posts_needed", ())] == 8
    assert samples[("instafly_last_capture_timestamp_seconds", ())] == 1_700_000_011


# --- the password --------------------------------------------------------------------------------


def test_with_a_password_nothing_captured_is_served_without_it(
    seeded: tuple[Config, dict[str, Any]],
) -> None:
    config, jobs = seeded
    client = protected_app(config).test_client()
    sha = client.application.config["INSTAFLY"].images_dir
    image = next(sha.rglob("*.jpg")).stem
    for path in (
        "/api/status",
        "/metrics",
        f"/images/{image}",
        f"/thumbs/job/{jobs['done']}/after",
    ):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    page = client.get("/")
    assert page.status_code == 302
    assert page.headers["Location"].endswith("/login?next=/")
    for wrong in (basic("wrong"), {"Authorization": "Bearer " + PASSWORD}):
        assert client.get("/api/status", headers=wrong).status_code == 401
    assert (
        client.get("/api/status", headers=basic(PASSWORD)).get_json()["capture"]["totals"]["posts"]
        == 13
    )
    assert client.get("/metrics", headers=basic(PASSWORD)).status_code == 200
    # Public: health, the phone set-up page, the CA certificate route, the stylesheet.
    assert client.get("/healthz").status_code == 200
    setup = client.get("/setup")
    assert setup.status_code == 200 and b"<svg" in setup.data
    assert b"321" not in setup.data and b"beach" not in setup.data
    assert client.get("/static/instafly.css").status_code == 200


def test_login_form_sets_a_session_and_logout_ends_it(seeded: tuple[Config, Any]) -> None:
    config, _ = seeded
    client = protected_app(config).test_client()
    token = csrf_of(client, "/login")
    wrong = client.post("/login", data={"password": "nope", "csrf_token": token, "next": "/"})
    assert wrong.status_code == 200 and b"Wrong password." in wrong.data
    assert client.get("/api/status").status_code == 401
    right = client.post(
        "/login", data={"password": PASSWORD, "csrf_token": token, "next": "/#model"}
    )
    assert (right.status_code, right.headers["Location"]) == (302, "/#model")
    assert client.get("/").status_code == 200
    assert client.get("/api/status").status_code == 200
    token = csrf_of(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/api/status").status_code == 401


def test_login_rejects_a_missing_csrf_token_and_foreign_redirects(
    seeded: tuple[Config, Any],
) -> None:
    config, _ = seeded
    client = protected_app(config).test_client()
    assert client.post("/login", data={"password": PASSWORD}).status_code == 400
    token = csrf_of(client, "/login")
    for target in ("https://evil.test/", "//evil.test/x", "javascript:alert(1)"):
        response = client.post(
            "/login", data={"password": PASSWORD, "csrf_token": token, "next": target}
        )
        assert response.headers["Location"] == "/", target
        token = csrf_of(client)


def test_the_session_key_is_kept_private_in_the_data_dir(seeded: tuple[Config, Any]) -> None:
    config, _ = seeded
    key_file = config.data_dir / SECRET_FILE
    key = create_app(config).secret_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key) == 32 and key == key_file.read_bytes()
    assert create_app(config).secret_key == key  # a restart keeps the logins


# --- actions and CSRF ---------------------------------------------------------------------------


def test_retry_needs_the_csrf_token(client: FlaskClient, seeded: tuple[Config, Any]) -> None:
    config, jobs = seeded
    rejected = jobs["rejected"]
    assert client.post(f"/actions/retry/{rejected}").status_code == 400
    assert (
        client.post(f"/actions/retry/{rejected}", data={"csrf_token": "forged"}).status_code == 400
    )
    with Database(config.db_path) as db:
        assert get_job(db.conn, rejected).state == "rejected"

    token = csrf_of(client)
    response = client.post(f"/actions/retry/{rejected}", data={"csrf_token": token})
    assert (response.status_code, response.headers["Location"]) == (302, "/#drop")
    with Database(config.db_path) as db:
        job = get_job(db.conn, rejected)
        assert (job.state, job.attempts, job.reason) == ("queued", 0, None)
    assert f"Job {rejected} is queued again." in client.get("/").get_data(as_text=True)

    client.post(f"/actions/retry/{jobs['done']}", data={"csrf_token": token})
    with Database(config.db_path) as db:
        assert get_job(db.conn, jobs["done"]).state == "done"
    assert "only failed or rejected jobs can" in client.get("/").get_data(as_text=True)


def test_train_now_needs_the_token_and_the_daemon(client: FlaskClient) -> None:
    assert client.post("/actions/train").status_code == 400
    response = client.post("/actions/train", data={"csrf_token": csrf_of(client)})
    assert (response.status_code, response.headers["Location"]) == (302, "/#model")
    assert "only while the daemon (instaflyd run) is running" in client.get("/").get_data(
        as_text=True
    )


def test_csrf_token_of_one_session_does_not_work_in_another(seeded: tuple[Config, Any]) -> None:
    config, jobs = seeded
    app = create_app(config)
    token = csrf_of(logged_in(app))
    other = logged_in(app)
    assert (
        other.post(f"/actions/retry/{jobs['rejected']}", data={"csrf_token": token}).status_code
        == 400
    )


# --- images: only from the store's folders ------------------------------------------------------


def test_thumbnails_come_only_from_the_store_folders(
    client: FlaskClient, seeded: tuple[Config, dict[str, Any]], tmp_path: Path
) -> None:
    config, jobs = seeded
    after = client.get(f"/thumbs/job/{jobs['done']}/after")
    assert (after.status_code, after.content_type) == (200, "image/jpeg")
    assert Image.open(io.BytesIO(after.data)).size == (200, 200)
    sha = next(config.images_dir.rglob("*.jpg")).stem
    captured = client.get(f"/images/{sha}")
    assert captured.status_code == 200 and captured.data[:2] == b"\xff\xd8"

    outside = tmp_path / "secret.jpg"
    outside.write_bytes(client.get(f"/images/{sha}").data)
    link = config.watch.drop_dir / "link.jpg"
    link.symlink_to(outside)
    with Database(config.db_path) as db, db.transaction() as conn:
        ids = [
            conn.execute(
                "INSERT INTO jobs (input_path, state, created, updated) VALUES (?, 'done', 0, 0)",
                (path,),
            ).lastrowid
            for path in (
                str(outside),
                str(config.watch.drop_dir / ".." / ".." / "secret.jpg"),
                str(link),
                str(config.db_path),
            )
        ]
    for job_id in ids:
        assert client.get(f"/thumbs/job/{job_id}/before").status_code == 404
    for path in (
        "/images/../instafly.db",
        "/images/" + "0" * 64,
        "/images/" + sha.upper(),
        f"/thumbs/job/{jobs['done']}/sidecar",
        "/thumbs/job/9999/before",
        f"/thumbs/job/{jobs['rejected']}/before",  # not an image
    ):
        assert client.get(path).status_code == 404, path


# --- the set-up section and the CA certificate ----------------------------------------------------


def write_ca(mitmproxy_dir: Path) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mitmproxy")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    mitmproxy_dir.mkdir(parents=True)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (mitmproxy_dir / "mitmproxy-ca-cert.pem").write_bytes(pem)
    (mitmproxy_dir / "mitmproxy-ca-cert.cer").write_bytes(pem)
    return certificate.fingerprint(hashes.SHA256())


def test_ca_downloads_fingerprint_and_qr_code(seeded: tuple[Config, Any]) -> None:
    config, _ = seeded
    client = protected_app(config).test_client()
    assert client.get("/ca/instafly-ca.pem").status_code == 404
    fingerprint = write_ca(config.mitmproxy_dir)
    pem = client.get("/ca/instafly-ca.pem")
    assert pem.status_code == 200 and pem.data.startswith(b"-----BEGIN CERTIFICATE-----")
    assert pem.headers["Content-Disposition"] == "attachment; filename=instafly-ca.pem"
    cer = client.get("/ca/instafly-ca.cer")
    assert cer.content_type == "application/x-x509-ca-cert"
    assert client.get("/ca/instafly-ca.key").status_code == 404
    html = client.get("/setup", base_url="http://localhost:8081").get_data(as_text=True)
    assert fingerprint.hex(":").upper() in html
    # What the QR code encodes: the box's own LAN address, never the name the request used.
    assert f"http://{lan_address()}:8081/setup" in html
    assert "http://localhost" not in html
    assert html.count("<svg") == 1


# --- safe mode ----------------------------------------------------------------------------------


def test_safe_mode_app_shows_the_problems_and_hides_password_values(tmp_path: Path) -> None:
    problems = [
        "x.yaml line 3: proxy -> listen_prot: unknown key; did you mean 'listen_port'?",
        "x.yaml line 7: web -> password: must be text (got 12345678)",
    ]
    client = create_safe_mode_app(problems, tmp_path / "x.yaml").test_client()
    page = client.get("/anything")
    html = page.get_data(as_text=True)
    assert page.status_code == 503
    assert "did you mean &#39;listen_port&#39;?" in html
    assert "web -&gt; password: must be text (value hidden: a secret)" in html
    assert "12345678" not in html
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["status"] == "safe_mode"
    assert client.get("/static/instafly.css").status_code == 200


def test_healthz_of_the_real_daemon_object_while_starting_and_stopping(tmp_path: Path) -> None:
    from instaflyd.daemon.run import Daemon
    from instaflyd.daemon.sdnotify import Notifier

    daemon = Daemon(make_config(tmp_path / "data", PASSWORD), Notifier({}))
    client = create_app(daemon.config, daemon).test_client()
    try:
        assert client.get("/healthz").get_json()["state"] == "starting"
        daemon.begin_stopping()
        response = client.get("/healthz")
        assert response.status_code == 200
        assert (response.get_json()["status"], response.get_json()["state"]) == (
            "stopping", "stopping",
        )  # fmt: skip
        status = client.get("/api/status", headers=basic(PASSWORD)).get_json()
        assert status["instafly"]["state"] == "stopping"
    finally:
        daemon.db.close()


def test_the_setup_link_warns_when_the_page_listens_only_on_loopback(tmp_path: Path) -> None:
    everywhere = create_app(make_config(tmp_path / "a")).test_client()
    html = everywhere.get("/setup", base_url="http://127.0.0.1:8081").get_data(as_text=True)
    assert f"http://{lan_address()}:8081/setup" in html  # the LAN address, not loopback
    assert "This page listens only on" not in html
    local = build_config({"web": {"host": "127.0.0.1"}}, data_dir=tmp_path / "b")
    html = create_app(local).test_client().get("/setup").get_data(as_text=True)
    assert (
        "This page listens only on 127.0.0.1, which phones cannot reach, so the QR code and link"
        " below will not open on a phone; set web.host: 0.0.0.0 in the config." in html
    )


def test_the_weights_upload_is_the_way_in_without_internet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = build_config({"model": {"weights_url": "http://127.0.0.1:9/x.h5"}}, data_dir=tmp_path)
    give_password(tmp_path)
    client = logged_in(create_app(config))
    (config.weights_dir).mkdir(parents=True)
    fetch_state = config.weights_dir / "fetch.json"
    fetch_state.write_text(json.dumps({
        "state": "failed", "bytes": 0, "total": 58_889_256, "updated": 0.0, "offline": True,
        "error": "cannot download http://127.0.0.1:9/x.h5: no connection to the internet",
    }))  # fmt: skip
    html = client.get("/").get_data(as_text=True)
    assert "this box cannot reach the internet to download the ImageNet VGG16 weights" in html
    assert 'action="/actions/weights" enctype="multipart/form-data"' in html
    token = csrf_of(client)

    def upload(content: bytes) -> str:
        response = client.post(
            "/actions/weights",
            data={"csrf_token": token, "weights": (io.BytesIO(content), "../vgg16.h5")},
            content_type="multipart/form-data",
        )
        assert (response.status_code, response.headers["Location"]) == (302, "/#model")
        return client.get("/").get_data(as_text=True)

    fake = b"weights " * 1000
    monkeypatch.setattr("instaflyd.weights.file.WEIGHTS_BYTES", len(fake))
    html = upload(fake[:-1])
    assert "Not taken: vgg16.h5 is not the ImageNet VGG16 notop file" in html
    assert "it has 7,999 bytes, not 8,000." in html
    assert not (config.weights_dir / WEIGHTS_FILE).exists()
    monkeypatch.setattr(
        "instaflyd.weights.file.WEIGHTS_MD5", hashlib.md5(fake, usedforsecurity=False).hexdigest()
    )
    html = upload(fake)
    assert "ImageNet VGG16 weights present: training can start." in html
    assert (config.weights_dir / WEIGHTS_FILE).read_bytes() == fake
    assert not fetch_state.exists()  # the failed download is forgotten
    assert 'action="/actions/weights"' not in html
