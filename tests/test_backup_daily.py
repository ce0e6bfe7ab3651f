"""Daily backups share their photos: each file is kept once in `backup.dir/files/`, a restore
from the newest of several daily backups gives back the store, rotation keeps every file a kept
backup needs and only those, the page's download is one self-contained file, and a missing or
damaged shared file is a clear error that restores nothing."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from support_backup import data_files, fill_appliance
from support_model import add_generated_posts, tiny_config
from test_backup import _state

from instaflyd.backup import (
    BackupError,
    SelfContained,
    export_backup,
    list_backups,
    read_manifest,
    restore,
    scheduled_backup,
)
from instaflyd.backup.manifest import PIECES_MEMBER
from instaflyd.backup.pieces import PieceStore, backup_pieces
from instaflyd.config import Config

DAY = 86_400
T0 = 1_800_000_000


@pytest.fixture
def box(tmp_path: Path) -> Config:
    config = tiny_config(
        tmp_path / "box", backup={"dir": str(tmp_path / "usb" / "backups"), "keep": 2}
    )
    fill_appliance(config)
    return config


def _pieces_on_disk(config: Config) -> dict[str, int]:
    folder = config.backup.dir / "files"
    return {p.name: p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _fresh(tmp_path: Path, name: str) -> Config:
    return tiny_config(tmp_path / name)


def _images(config: Config) -> dict[str, bytes]:
    return {k: v for k, v in data_files(config.data_dir).items() if k.startswith("images/")}


@pytest.mark.slow
def test_the_newest_of_several_daily_backups_restores_the_store_and_photos_are_kept_once(
    box: Config, tmp_path: Path
) -> None:
    first = scheduled_backup(box, now=T0)
    photos = [set(_images(box))]
    add_generated_posts(box, 6, start=100, side=32)
    photos.append(set(_images(box)))
    second = scheduled_backup(box, now=T0 + DAY)
    add_generated_posts(box, 6, start=200, side=32)
    photos.append(set(_images(box)))
    newest = scheduled_backup(box, now=T0 + 2 * DAY)
    expected, expected_files = _state(box), data_files(box.data_dir)

    [m_new, m_second] = [b.manifest for b in list_backups(box)]
    assert not first.exists()  # keep: 2
    listed = backup_pieces(newest, m_new.pieces)
    assert m_new.pieces == m_new.files == len(listed) > 24
    # The second and the third added only their six new photos; the rest is shared.
    for manifest, (before, after) in ((m_second, photos[:2]), (m_new, photos[1:])):
        added = after - before
        assert len(added) == 6
        assert manifest.added_bytes == sum(len(expected_files[name]) for name in added)
    all_photos = sum(len(v) for k, v in expected_files.items() if k.startswith("images/"))
    assert all_photos > 5 * m_new.added_bytes > 0
    # Each file once in the shared folder: those the newest lists (it lists all of them).
    on_disk = _pieces_on_disk(box)
    assert set(on_disk) == {p.sha256 for p in listed}
    assert sum(on_disk.values()) == m_new.file_bytes
    assert newest.stat().st_size < m_new.database_bytes + 100_000  # no photo inside

    fresh = _fresh(tmp_path, "new-box")
    result = restore(fresh, newest)

    assert _state(fresh) == expected
    assert result.files == m_new.files
    restored = data_files(fresh.data_dir)
    kept = {
        k: v
        for k, v in expected_files.items()
        if not k.startswith(("instafly.db", "features/", "models/v0002"))
    }
    assert {k: v for k, v in restored.items() if k != "instafly.db"} == kept
    # The older kept one restores its own day: six posts fewer.
    older = _fresh(tmp_path, "older-box")
    assert restore(older, second).counts.posts == result.counts.posts - 6
    assert set(_images(older)) == photos[1]


@pytest.mark.slow
def test_rotation_keeps_every_shared_file_a_kept_backup_needs_and_only_those(
    box: Config, tmp_path: Path
) -> None:
    images = sorted(p for p in box.images_dir.rglob("*") if p.is_file())
    only_first, only_second = images[0], images[1]
    first_sha, second_sha = (hashlib.sha256(p.read_bytes()).hexdigest() for p in images[:2])
    second_bytes = only_second.read_bytes()
    only_second.rename(tmp_path / "aside")  # not in the first backup
    scheduled_backup(box, now=T0)
    only_first.unlink()
    (tmp_path / "aside").rename(only_second)
    second = scheduled_backup(box, now=T0 + DAY)
    only_second.unlink()  # gone from the box after the second backup
    # Not a backup (no manifest can be read from it): it needs nothing and keeps nothing.
    (box.backup.dir / "instafly-backup-20991231-000000.tar").write_bytes(b"half a backup")
    scheduled_backup(box, now=T0 + 2 * DAY)  # the first is rotated out

    kept = list_backups(box)
    needed = {p.sha256 for b in kept for p in backup_pieces(b.path, b.manifest.pieces)}
    assert len(kept) == 2 and set(_pieces_on_disk(box)) == needed
    # The photo only the rotated-out backup held is gone; the one only the kept second holds not.
    assert first_sha not in needed and second_sha in needed
    fresh = _fresh(tmp_path, "from-second")
    restore(fresh, second)
    assert (fresh.images_dir / only_second.relative_to(box.images_dir)).read_bytes() == second_bytes
    assert not (fresh.images_dir / only_first.relative_to(box.images_dir)).exists()

    # A kept backup whose list cannot be read: no shared file is removed (it may need any).
    damaged = box.backup.dir / "instafly-backup-20200101-000000.tar"
    _rewrite(second, damaged, index=b"not gzip")
    before = _pieces_on_disk(box)
    box_keep_all = tiny_config(box.data_dir, backup={"dir": str(box.backup.dir), "keep": 5})
    add_generated_posts(box_keep_all, 1, start=300, side=32)
    second.unlink()
    scheduled_backup(box_keep_all, now=T0 + 3 * DAY)
    assert set(before) <= set(_pieces_on_disk(box)) and second_sha in _pieces_on_disk(box)


def _rewrite(source: Path, target: Path, *, index: bytes) -> None:
    """A copy of the daily backup `source` with its file list replaced by `index`."""
    with tarfile.open(source) as src, tarfile.open(target, "w:", format=tarfile.GNU_FORMAT) as out:
        for member in src:
            data = src.extractfile(member)
            assert data is not None
            body = index if member.name == PIECES_MEMBER else data.read()
            member.size = len(body)
            out.addfile(member, io.BytesIO(body))


@pytest.mark.slow
def test_a_missing_or_damaged_shared_file_is_a_clear_error_and_restores_nothing(
    box: Config, tmp_path: Path
) -> None:
    daily = scheduled_backup(box, now=T0)
    manifest = read_manifest(daily)
    store = PieceStore(box.backup.dir)
    pieces = backup_pieces(daily, manifest.pieces)
    photo = next(p for p in pieces if p.name.startswith("data/images/"))
    stored = store.path_for(photo.sha256)
    original = stored.read_bytes()

    stored.unlink()
    fresh = _fresh(tmp_path, "missing")
    with pytest.raises(BackupError, match=rf"1 of the backup's files are missing .*{photo.name}"):
        restore(fresh, daily)
    assert not fresh.db_path.exists() and data_files(fresh.data_dir) == {}
    with pytest.raises(BackupError, match="missing or damaged"):
        SelfContained(daily)

    stored.write_bytes(bytes(len(original)))  # same size, other bytes: bit rot on the disk
    fresh = _fresh(tmp_path, "damaged")
    with pytest.raises(BackupError, match=rf"{photo.name} .* is damaged: its content no longer"):
        restore(fresh, daily)
    assert not fresh.db_path.exists()  # the database is put in place last, so not at all
    assert not any(k.startswith("mitmproxy/") for k in data_files(fresh.data_dir))
    with pytest.raises(BackupError, match="is damaged"):
        export_backup(daily, tmp_path / "copy.tar")
    assert not (tmp_path / "copy.tar").exists()

    stored.write_bytes(original)
    for case, index in (
        ("not gzip", b"nonsense"),
        ("cut short", gzip.compress(b'["data/a", "' + b"0" * 64 + b'", 1, 384, 0]')),
        ("escaping", gzip.compress(b'["data/../../etc/x", "' + b"0" * 64 + b'", 1, 384, 0]\n')),
    ):
        broken = tmp_path / f"{case}.tar"
        _rewrite(daily, broken, index=index)
        (tmp_path / "files").mkdir(exist_ok=True)
        with pytest.raises(BackupError, match="file list"):
            restore(_fresh(tmp_path, case.replace(" ", "-")), broken)
    # Put right again, the same backup restores.
    assert restore(_fresh(tmp_path, "mended"), daily).counts.posts == 24


@pytest.mark.slow
def test_the_download_is_one_self_contained_file_that_restores_on_a_new_box(
    box: Config, tmp_path: Path
) -> None:
    scheduled_backup(box, now=T0)
    add_generated_posts(box, 3, start=100, side=32)
    daily = scheduled_backup(box, now=T0 + DAY)
    expected = _state(box)

    alone = tmp_path / "only-the-daily-file.tar"  # copied without its files/ folder
    alone.write_bytes(daily.read_bytes())
    with pytest.raises(BackupError, match=r"is a daily backup: .* Copy the whole backup folder"):
        restore(_fresh(tmp_path, "from-the-file-alone"), alone)

    export = SelfContained(daily)
    data = b"".join(export.chunks())
    assert len(data) == export.size
    file = tmp_path / "laptop" / "instafly.tar"
    file.parent.mkdir()
    file.write_bytes(data)

    manifest = read_manifest(file)
    assert (manifest.format_version, manifest.pieces) == (1, 0)  # the release before reads it
    with tarfile.open(file) as tar:
        names = tar.getnames()
    assert PIECES_MEMBER not in names and sum(n.startswith("data/images/") for n in names) == 27
    assert not (file.parent / "files").exists()
    fresh = _fresh(tmp_path, "new-sd-card")
    restore(fresh, file)
    assert _state(fresh) == expected
    assert (
        data_files(fresh.data_dir)["mitmproxy/mitmproxy-ca.pem"]
        == (box.mitmproxy_dir / "mitmproxy-ca.pem").read_bytes()
    )
    assert os.stat(fresh.mitmproxy_dir / "mitmproxy-ca.pem").st_mode & 0o777 == 0o600
