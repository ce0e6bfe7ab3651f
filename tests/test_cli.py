"""The command line contract: global options anywhere, one JSON document, CSV export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from helpers import run_cli, run_cli_json

from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.formats import count_unread_format
from instaflyd.store.images import record_image
from instaflyd.store.posts import attach_image, upsert_post

HEADER = (
    "id,shortcode,owner_id,username,media_type,like_count,follower_count,like_rate,"
    "taken_at,image_path"
)


def test_stats_json_on_an_empty_data_dir_prints_zeros(tmp_path: Path) -> None:
    stats = run_cli_json("stats", "--json", data_dir=tmp_path / "x")
    assert stats["capture"]["totals"] == {
        "flows": 0, "posts": 0, "accounts": 0, "images": 0, "labelled": 0,
    }  # fmt: skip
    assert stats["drop_folder"]["jobs"] == {
        "queued": 0,
        "waiting_model": 0,
        "running": 0,
        "done": 0,
        "rejected": 0,
        "failed": 0,
    }
    model = stats["model"]
    assert (model["version"], model["samples"], model["training"]["running"]) == (None, 0, False)
    assert stats["instafly"]["state"] == "standalone" and stats["components"] == {}
    weights = stats["model"]["weights"]
    assert (weights["setting"], weights["present"], weights["ok"]) == ("imagenet", False, False)
    assert "instaflyd weights fetch" in weights["message"]
    assert stats["model"]["next_training"]["due"] is False
    assert stats["capture"]["unread_formats"] == []


@pytest.mark.slow
def test_stats_json_lists_the_formats_not_understood_per_path(tmp_path: Path) -> None:
    with Database(tmp_path / "instafly.db") as db, db.transaction() as conn:
        count_unread_format(conn, "/api/v1/new/?token=x", "data.grid[]: display_url", now=5.0)
    stats = run_cli_json("stats", "--json", data_dir=tmp_path)
    assert stats["capture"]["unread_formats"] == [{
        "path": "/api/v1/new/", "fingerprint": "data.grid[]: display_url",
        "count": 1, "first_seen": 5.0, "last_seen": 5.0,
    }]  # fmt: skip


@pytest.mark.slow
def test_global_options_work_after_the_command_too(tmp_path: Path) -> None:
    result = run_cli("stats", "--json", "--data-dir", tmp_path / "after")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "after" / "instafly.db").is_file()


def test_export_csv_has_the_design_header_and_values(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert run_cli("export", "--csv", "-", data_dir=data).stdout == HEADER + "\n"

    files = ImageFiles(data / "images")
    with Database(data / "instafly.db") as db, db.transaction() as conn:
        stored = files.put(b"jpeg bytes", "jpg")
        record_image(conn, stored, 640, 640, 10)
        owner = AccountRecord("42", username="alice", follower_count=400)
        upsert_post(conn, PostRecord("1", "photo", "abc", owner, 100, 5, 1500000000, ["u/1_n.jpg"]))
        upsert_post(
            conn, PostRecord("2", "video", "def", AccountRecord("42"), None, None, None, [])
        )
        attach_image(conn, "1", stored.sha256)

    out = tmp_path / "posts.csv"
    result = run_cli("export", "--csv", out, data_dir=data)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.splitlines()[0] == HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [
        {"id": "1", "shortcode": "abc", "owner_id": "42", "username": "alice",
         "media_type": "photo", "like_count": "100", "follower_count": "400", "like_rate": "0.25",
         "taken_at": "1500000000", "image_path": str(stored.path)},
        {"id": "2", "shortcode": "def", "owner_id": "42", "username": "alice",
         "media_type": "video", "like_count": "", "follower_count": "400", "like_rate": "",
         "taken_at": "", "image_path": ""},
    ]  # fmt: skip


@pytest.mark.slow
def test_a_broken_database_fails_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "instafly.db").write_bytes(b"garbage" * 1000)
    result = run_cli("stats", "--json", data_dir=data)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"instaflyd: {data / 'instafly.db'}: cannot open the database: file is not a database\n"
    )


def test_unknown_command_is_a_usage_error() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
