"""The page offers the latest daily backup for download, to the logged-in household only."""

from __future__ import annotations

from pathlib import Path

from support_daemon import basic_auth, give_password, seed_store
from test_web_api import logged_in

from instaflyd.backup import scheduled_backup
from instaflyd.config import build_config
from instaflyd.web import create_app


def test_the_latest_backup_is_offered_for_download_to_the_household_only(tmp_path: Path) -> None:
    config = build_config(
        {"backup": {"dir": str(tmp_path / "usb")}, "watch": {"drop_dir": "d", "output_dir": "o"}},
        data_dir=tmp_path / "data",
    )
    seed_store(config.data_dir, posts=7)
    give_password(config.data_dir)
    app = create_app(config)
    client = logged_in(app)

    page = client.get("/").get_data(as_text=True)
    assert "No backup yet" in page and "/backup/latest" not in page
    missing = client.get("/backup/latest")
    assert missing.status_code == 404 and "no backup yet" in missing.get_data(as_text=True)

    scheduled_backup(config, now=1_800_000_000)
    newest = scheduled_backup(config, now=1_800_086_400)

    page = client.get("/").get_data(as_text=True)
    assert 'href="/backup/latest"' in page and "7 posts" in page
    status = client.get("/api/status").get_json()["backup"]
    assert (status["backups"], status["latest_name"], status["latest_posts"]) == (
        2, "instafly-backup-20270116-080000.tar", 7,
    )  # fmt: skip
    download = client.get("/backup/latest")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"] == f"attachment; filename={newest.name}"
    assert download.data == newest.read_bytes()

    stranger = app.test_client()
    refused = stranger.get("/backup/latest")
    assert refused.status_code in (302, 401) and refused.data != newest.read_bytes()
    assert stranger.get("/backup/latest", headers=basic_auth("wrong")).status_code == 401
