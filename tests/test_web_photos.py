"""Photos from the phone, through the app on a seeded temp store: /api/photos and its limits.

The app writes real files into a real drop folder and real jobs into a real SQLite store; the
browser test in test_web_household.py sends photos through a running daemon and its worker.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers import jpeg_bytes
from support_daemon import TEST_PASSWORD, give_password, seed_extras, seed_store

from instaflyd.config import Config, build_config
from instaflyd.jobs.outputs import Enhancement, Sidecar, write_sidecar
from instaflyd.store import Database
from instaflyd.store.jobs import get_job
from instaflyd.web import create_app
from instaflyd.web.uploads import safe_name


def make_config(data_dir: Path, **enhance: Any) -> Config:
    return build_config(
        {
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
            "enhance": enhance,
        },
        data_dir=data_dir,
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "data", max_file_mb=0.2)
    seed_store(config.data_dir, posts=4, owners=2)
    seed_extras(config.data_dir, config.watch.drop_dir, config.watch.output_dir)
    return config


@pytest.fixture
def client(config: Config) -> FlaskClient:
    """A browser logged in to the page with the box's password."""
    give_password(config.data_dir)
    client = create_app(config).test_client()
    login = token_of(client, "/login")
    response = client.post("/login", data={"password": TEST_PASSWORD, "csrf_token": login})
    assert response.status_code == 302
    return client


def token_of(client: FlaskClient, page: str = "/") -> str:
    html = client.get(page).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', html).group(1)


def send(client: FlaskClient, *files: tuple[bytes, str], token: str | None = None) -> Any:
    headers = {"X-CSRF-Token": token} if token else {}
    data = {"photo": [(io.BytesIO(content), name) for content, name in files]}
    return client.post(
        "/api/photos", data=data, headers=headers, content_type="multipart/form-data"
    )


def drop_files(config: Config) -> set[str]:
    return {p.name for p in config.watch.drop_dir.iterdir()}


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("IMG_0001.HEIC", "IMG_0001.heic"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Pictures\\beach.JPG", "beach.jpg"),
        (".hidden.jpg", "hidden.jpg"),
        ("holiday.instafly.jpg", "holiday-instafly.jpg"),
        ("a\x00b\nc.png", "abc.png"),
        ("<script>.jpg", "script.jpg"),
        ("Café Zürich.jpeg", "Café Zürich.jpeg"),
        ("", "photo"),
        ("...", "photo"),
        ("x" * 300 + ".jpg", "x" * 80 + ".jpg"),
    ],
)
def test_a_sent_file_name_is_never_believed(given: str, safe: str) -> None:
    assert safe_name(given) == safe


def test_photos_need_the_csrf_token_from_the_page(client: FlaskClient, config: Config) -> None:
    before = drop_files(config)
    assert send(client, (jpeg_bytes(96, 96, 1), "a.jpg")).status_code == 400
    forged = send(client, (jpeg_bytes(96, 96, 1), "a.jpg"), token="forged")
    assert forged.status_code == 400
    # The API answers JSON, its refusal too (not the HTML error page).
    assert forged.is_json and "did not come from this page" in forged.get_json()["error"]
    assert drop_files(config) == before  # nothing written
    response = send(client, (jpeg_bytes(96, 96, 1), "a.jpg"), token=token_of(client))
    assert response.status_code == 202


def test_sent_photos_go_into_the_drop_folder_and_the_queue_once(
    client: FlaskClient, config: Config
) -> None:
    token = token_of(client)
    first, second = jpeg_bytes(120, 120, 11), jpeg_bytes(120, 120, 12)
    response = send(client, (first, "../IMG_1.JPG"), (second, "beach.jpg"), token=token)
    assert response.status_code == 202
    photos = response.get_json()["photos"]
    # beach.jpg is taken in the drop folder (a dropped photo): the upload never replaces it.
    assert [(p["name"], p["status"]) for p in photos] == [
        ("IMG_1.jpg", "queued"),
        ("beach-2.jpg", "queued"),
    ]
    drop = config.watch.drop_dir
    assert (drop / "IMG_1.jpg").read_bytes() == first
    assert (drop / "beach-2.jpg").read_bytes() == second
    assert not [p for p in drop.iterdir() if p.name.startswith(".")]  # no staging file left
    with Database(config.db_path) as db:
        job = get_job(db.conn, photos[0]["id"])
        assert (job.state, job.input_path) == ("queued", str(drop / "IMG_1.jpg"))
    # The same photo again, under another name: the same job, no second copy.
    again = send(client, (first, "copy.jpg"), token=token).get_json()["photos"]
    assert again == [{"id": photos[0]["id"], "name": "IMG_1.jpg", "status": "queued"}]
    assert "copy.jpg" not in drop_files(config)


def test_limits_empty_too_large_and_missing_files(client: FlaskClient, config: Config) -> None:
    token = token_of(client)
    before = drop_files(config)
    big = send(client, (b"\xff" * 250_000, "big.jpg"), token=token)
    assert big.status_code == 413
    assert big.get_json()["error"] == "big.jpg is larger than 0.2 MB (enhance.max_file_mb)"
    empty = send(client, (b"", "empty.jpg"), token=token)
    assert (empty.status_code, empty.get_json()["error"]) == (413, "empty.jpg is empty")
    none = client.post("/api/photos", data={}, headers={"X-CSRF-Token": token})
    assert none.status_code == 400
    assert none.get_json()["error"].startswith("no photo: send the files as multipart")
    too_many = send(client, *[(jpeg_bytes(96, 96, n), f"{n}.jpg") for n in range(21)], token=token)
    assert too_many.get_json() == {"error": "at most 20 photos in one request"}
    # A body far beyond the limit is refused before it is read.
    huge = send(client, (b"\xff" * 600_000, "huge.jpg"), token=token)
    assert huge.status_code == 413
    assert drop_files(config) == before


def test_the_photo_list_newest_first_with_scores_edits_and_urls(
    client: FlaskClient, config: Config
) -> None:
    done = config.watch.output_dir / "beach.instafly.json"
    enhancement = Enhancement(
        str(config.watch.output_dir / "beach.instafly.jpg"), -2.5, -2.1,
        {"exposure": 0.18, "contrast": 0.0}, 1.0, "edits", 1, 8, 96, 96, "0.1.0",
    )  # fmt: skip
    write_sidecar(done, Sidecar("done", "beach.jpg", enhancement=enhancement))
    with Database(config.db_path) as db, db.transaction() as conn:
        conn.execute("UPDATE jobs SET sidecar_path = ? WHERE state = 'done'", (str(done),))
    sent = send(client, (jpeg_bytes(96, 96, 21), "new.jpg"), token=token_of(client)).get_json()
    photos = client.get("/api/photos").get_json()["photos"]
    assert [p["name"] for p in photos] == ["new.jpg", "waiting.jpg", "broken.jpg", "beach.jpg"]
    new, beach = photos[0], photos[-1]
    assert new["id"] == sent["photos"][0]["id"]
    assert (new["status"], new["urls"]["enhanced"], new["urls"]["after"]) == ("queued", None, None)
    assert new["urls"]["before"] == f"/thumbs/job/{new['id']}/before"
    assert beach["status"] == "done"
    assert (beach["score_before"], beach["score_after"]) == (-2.5, -2.1)
    assert beach["score_change"] == pytest.approx(0.4)
    assert beach["edits"] == {"exposure": 0.18}
    assert beach["output_name"] == "beach.instafly.jpg"
    assert beach["urls"]["enhanced"] == f"/api/photos/{beach['id']}/enhanced"
    assert photos[2]["urls"] == {"before": None, "after": None, "enhanced": None}  # rejected
    assert (photos[2]["retryable"], beach["retryable"], beach["attempts"]) == (True, False, 0)
    assert set(beach) == {
        "id", "name", "status", "reason", "attempts", "created", "finished", "score_before",
        "score_after", "score_change", "model_version", "retryable", "output_name", "edits",
        "urls", "words",
    }  # fmt: skip
    assert client.get(f"/api/photos/{beach['id']}").get_json() == beach
    assert client.get("/api/photos/99999").status_code == 404


def test_the_enhanced_download_is_the_output_file_only(client: FlaskClient, config: Config) -> None:
    photos = {p["name"]: p for p in client.get("/api/photos").get_json()["photos"]}
    beach = photos["beach.jpg"]
    download = client.get(beach["urls"]["enhanced"])
    assert download.status_code == 200
    assert download.data == (config.watch.output_dir / "beach.instafly.jpg").read_bytes()
    assert download.headers["Content-Disposition"] == "attachment; filename=beach.instafly.jpg"
    assert client.get(f"/api/photos/{photos['waiting.jpg']['id']}/enhanced").status_code == 404
    # A job row pointing outside the output folder is never served.
    with Database(config.db_path) as db, db.transaction() as conn:
        conn.execute(
            "UPDATE jobs SET output_path = ? WHERE id = ?",
            (str(config.db_path), beach["id"]),
        )
    assert client.get(beach["urls"]["enhanced"]).status_code == 404


def test_without_the_password_photos_are_neither_listed_nor_taken(tmp_path: Path) -> None:
    config = build_config({"watch": {"drop_dir": "drop"}}, data_dir=tmp_path)
    give_password(tmp_path)
    client = create_app(config).test_client()
    assert client.get("/api/photos").status_code == 401
    response = send(client, (jpeg_bytes(96, 96, 1), "a.jpg"))
    assert response.status_code == 401
    assert not (tmp_path / "drop").exists() or not list((tmp_path / "drop").iterdir())


def test_photos_from_a_page_of_another_site_are_refused(
    client: FlaskClient, config: Config
) -> None:
    """The CSRF token alone is not enough: a forged Origin (DNS rebinding) is refused too."""
    before = drop_files(config)
    token = token_of(client)
    forged = client.post(
        "/api/photos",
        data={"photo": [(io.BytesIO(jpeg_bytes(64, 64, 9)), "a.jpg")]},
        headers={"X-CSRF-Token": token, "Origin": "http://evil.example"},
        content_type="multipart/form-data",
    )
    assert forged.status_code == 403
    assert drop_files(config) == before
    evil_host = client.get("/api/photos", headers={"Host": "evil.example"})
    assert evil_host.status_code in (400, 403, 421)
