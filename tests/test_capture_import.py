"""`instaflyd import` and `instaflyd ca` as real commands, on the sample dump and broken files."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from helpers import FIXTURES, run_cli, run_cli_json
from mitmproxy import io as mitmproxy_io
from PIL import Image

from instaflyd.capture.images import ImageRejected, VerifiedImage, verify_image
from instaflyd.capture.matching import PendingImages

DUMP = FIXTURES / "instagram" / "sample.flows"
FIRST_IMPORT = {
    "flows": 12,
    "posts_new": 32,
    "posts_updated": 2,  # the jlo carousel, described by two responses
    "accounts": 7,
    "images_stored": 5,  # 4 covers, one of them replaced by its larger variant
    "images_unmatched": 1,
    "errors": 0,
}


def query(data: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(data / "instafly.db") as conn:
        return conn.execute(sql).fetchall()


def flow_ends(path: Path) -> list[int]:
    """The byte offset at which each flow of a dump ends."""
    ends = []
    with path.open("rb") as handle:
        for _ in mitmproxy_io.FlowReader(handle).stream():
            ends.append(handle.tell())
    return ends


@pytest.mark.slow
def test_import_reads_the_sample_session_and_a_second_import_adds_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli_json("import", DUMP, "--json", data_dir=data) == FIRST_IMPORT

    labelled = query(
        data, "SELECT id, like_count, follower_count FROM labelled_posts ORDER BY like_rate DESC"
    )
    assert labelled == [
        ("2831580432341165696", 3307385, 52979346),  # RDJ carousel, its 96x120 variant
        ("2809059524532288506", 983180, 52979346),  # RDJ photo
        ("2317006284167526179", 808778, 122620202),  # jlo carousel (likes of the later response)
    ]
    covers = dict(
        query(
            data,
            "SELECT p.shortcode, i.width || 'x' || i.height FROM posts p"
            " JOIN images i ON i.sha256 = p.image_sha256",
        )
    )
    assert covers == {
        "CdLy2aepGaA": "96x120",
        "Cb7yMEorLv6": "80x80",
        "CcqwOyGvrNi": "64x80",  # the timeline photo: no follower count known, so not labelled
        "CAnqPB-Jzcj": "72x72",
    }
    # The follower count came from web_profile_info (2022), the later of two profile responses.
    assert query(data, "SELECT follower_count FROM accounts WHERE id = '1518284433'") == [
        (52979346,)
    ]
    # The replaced smaller variant left the folder and the table: both hold what posts use.
    files = sorted(path.name for path in (data / "images").rglob("*.jpg"))
    assert len(files) == 4
    used = query(data, "SELECT image_sha256 || '.jpg' FROM posts WHERE image_sha256 IS NOT NULL")
    assert sorted(name for (name,) in used) == files
    assert run_cli_json("stats", "--json", data_dir=data)["capture"]["totals"]["images"] == 4

    again = run_cli_json("import", DUMP, "--json", data_dir=data)
    assert again == FIRST_IMPORT | {
        "posts_new": 0,
        "posts_updated": 34,
        "accounts": 0,
        "images_stored": 0,
    }
    assert query(data, "SELECT COUNT(*) FROM posts") == [(32,)]
    assert sorted(path.name for path in (data / "images").rglob("*.jpg")) == files

    # Privacy: the session cookie and the request body of the dump are nowhere on disk.
    for path in data.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"sEcReTcOoKiEvAlUe" not in content, path
            assert b"SeCrEtRequestBodyToken" not in content, path


@pytest.mark.slow
def test_a_truncated_dump_keeps_what_was_read_and_names_the_file(tmp_path: Path) -> None:
    ends = flow_ends(DUMP)
    truncated = tmp_path / "cut.flows"
    truncated.write_bytes(DUMP.read_bytes()[: ends[3] + 500])  # inside the 5th flow
    corrupt = tmp_path / "noise.flows"
    corrupt.write_bytes(os.urandom(64))
    data = tmp_path / "data"
    result = run_cli("import", truncated, corrupt, "--json", data_dir=data)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"instaflyd: import: {truncated}: not a mitmproxy dump, or corrupt or truncated after"
        " 4 flows (Invalid data format.)",
        f"instaflyd: import: {corrupt}: not a mitmproxy dump, or corrupt or truncated after"
        " 0 flows (Invalid data format.)",
    ]
    summary = json.loads(result.stdout)
    assert summary == {
        "flows": 4,
        "posts_new": 20,
        "posts_updated": 0,
        "accounts": 1,
        "images_stored": 2,
        "images_unmatched": 0,
        "errors": 2,
    }
    # The four flows before the damage are in the store: the profile with its cover.
    assert query(data, "SELECT COUNT(*) FROM posts") == [(20,)]
    assert query(data, "SELECT follower_count FROM accounts") == [(52979346,)]


@pytest.mark.slow
def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.flows"
    result = run_cli("import", missing, DUMP, data_dir=tmp_path / "data")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"instaflyd: import: {missing}: cannot read: No such file or directory"
    )
    assert result.stdout.startswith("flows 12, posts new 32, ")


def test_ca_creates_the_authority_once_with_a_private_key_only_the_owner_reads(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = run_cli_json("ca", "--json", data_dir=data)
    cert_path = data / "mitmproxy" / "mitmproxy-ca-cert.pem"
    assert first["path"] == str(cert_path)
    assert first["created"] is True
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert first["sha256"] == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert len(first["sha256"]) == 95
    for name in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        assert stat.S_IMODE((data / "mitmproxy" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "mitmproxy").stat().st_mode) == 0o700

    os.chmod(data / "mitmproxy" / "mitmproxy-ca.pem", 0o644)  # someone loosened it
    text = run_cli("ca", data_dir=data)
    assert text.returncode == 0
    assert text.stdout.splitlines() == [
        f"certificate  {cert_path}",
        f"sha256       {first['sha256']}",
    ]
    assert stat.S_IMODE((data / "mitmproxy" / "mitmproxy-ca.pem").stat().st_mode) == 0o600


def test_the_fingerprint_read_without_mitmproxy_is_mitmproxys(tmp_path: Path) -> None:
    """`ca_files` (the page's and `stats`' reader) agrees with mitmproxy on names and fingerprint."""
    from mitmproxy.options import CONF_BASENAME

    from instaflyd.capture.ca import ensure_ca
    from instaflyd.capture.ca_files import CONF_BASENAME as OURS
    from instaflyd.capture.ca_files import ca_fingerprint

    assert OURS == CONF_BASENAME
    confdir = tmp_path / "mitmproxy"
    assert ca_fingerprint(confdir) is None  # no CA yet
    created = ensure_ca(confdir)
    assert ca_fingerprint(confdir) == created.sha256
    assert len(created.sha256) == 95
    (confdir / "mitmproxy-ca-cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n%%%\n")
    assert ca_fingerprint(confdir) is None  # not a certificate: no fingerprint, no exception


# --- the pending set, on its own ----------------------------------------------------------


def image(side: int) -> VerifiedImage:
    return VerifiedImage(b"x" * side, "jpg", side, side)


def test_pending_images_are_bounded_in_count_and_age_and_keep_the_largest() -> None:
    pending = PendingImages(max_count=2, max_age_seconds=60)
    assert pending.add("a_n.jpg", image(10), now=0) == 0
    assert pending.add("a_n.jpg", image(30), now=1) == 0  # larger variant replaces
    assert pending.add("a_n.jpg", image(20), now=2) == 0  # smaller one does not
    assert pending.add("b_n.jpg", image(10), now=3) == 0
    assert pending.add("c_n.jpg", image(10), now=4) == 1  # over the count: the oldest goes
    assert len(pending) == 2
    assert pending.pop("a_n.jpg") is None
    assert pending.pop("b_n.jpg") == image(10)
    assert pending.expire(now=64) == 0
    assert pending.expire(now=65) == 1  # c waited more than 60 s
    assert len(pending) == 0


def test_pending_images_disabled_with_a_count_of_zero() -> None:
    pending = PendingImages(max_count=0, max_age_seconds=60)
    assert pending.add("a_n.jpg", image(10), now=0) == 1
    assert pending.pop("a_n.jpg") is None


@pytest.mark.parametrize("payload", [b"", b"GIF87a", b"<html>not found</html>"])
def test_bodies_pillow_cannot_read_are_rejected(payload: bytes) -> None:
    with pytest.raises(ImageRejected, match="not an image Pillow can read"):
        verify_image(payload)


def test_a_gif_is_an_image_but_not_one_we_keep() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2)).save(buffer, "GIF")
    with pytest.raises(ImageRejected, match="GIF images are not kept"):
        verify_image(buffer.getvalue())
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2)).save(buffer, "PNG")
    checked = verify_image(buffer.getvalue())
    assert (checked.ext, checked.width, checked.height, checked.area) == ("png", 3, 2, 6)
    assert checked.data == buffer.getvalue()
