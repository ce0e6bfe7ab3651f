"""The page offers the latest daily backup for download, to the logged-in household only."""

from __future__ import annotations

from pathlib import Path

from support_backup import data_files
from support_daemon import basic_auth, give_password, seed_store
from test_web_api import logged_in

from instaflyd.backup import restore, scheduled_backup
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
    assert "The daily backups keep each photo once: this one" in page
    status = client.get("/api/status").get_json()["backup"]
    assert (status["backups"], status["latest_name"], status["latest_posts"]) == (
        2, "instafly-backup-20270116-080000.tar", 7,
    )  # fmt: skip
    download = client.get("/backup/latest")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"] == f"attachment; filename={newest.name}"
    # One self-contained file (the daily backup shares its photos with the others in the folder):
    # everything a new SD card needs, and nothing of the folder's.
    assert int(download.headers["Content-Length"]) == len(download.data) > newest.stat().st_size
    laptop = tmp_path / "laptop" / newest.name
    laptop.parent.mkdir()
    laptop.write_bytes(download.data)
    new_box = build_config({}, data_dir=tmp_path / "new-box")
    restored = restore(new_box, laptop)
    assert (restored.counts.posts, restored.manifest.pieces) == (7, 0)
    assert data_files(new_box.images_dir) == data_files(config.images_dir) != {}

    # A shared photo gone from the folder: the page says so instead of sending half a backup.
    next(p for p in (config.backup.dir / "files").rglob("*") if p.is_file()).unlink()
    broken = client.get("/backup/latest")
    assert broken.status_code == 503
    assert "missing or damaged" in broken.get_data(as_text=True)

    stranger = app.test_client()
    refused = stranger.get("/backup/latest")
    assert refused.status_code in (302, 401) and b"instafly-backup" not in refused.data
    assert stranger.get("/backup/latest", headers=basic_auth("wrong")).status_code == 401
