"""Uploads within a disk budget, what a killed upload leaves, huge ids and odd file names,
tried for real against the page served by waitress on loopback (issue 20, items 8, 9, 10).

- 9: the attacker (with the password) sends junk photos until the box refuses: the drop folder
  stops at `web.uploads_max_total_mb`, and nothing is taken while the disk is at the floor;
  each refusal is a 507 that says which limit and what to do.
- 8: the page is SIGKILLed in the middle of a 30 MB upload; the staging file it leaves is
  hidden from the worker, and gone once the page starts again.
- 10: ids of 2**63 and more are a 404 on every route that takes one, never a 500; a photo whose
  name holds a newline downloads.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests
from helpers import jpeg_bytes, wait_until
from support_page import page_process
from support_web import logged_in, page_config

from instaflyd.config import Config, load_config
from instaflyd.store import Database
from instaflyd.store.jobs import enqueue_job, finish_job
from instaflyd.watch.rules import DropRules
from instaflyd.web import uploads

MB = 1_000_000


def junk(size: int, seed: int) -> bytes:
    return seed.to_bytes(4, "big") + os.urandom(size - 4)


def drop_bytes(config: Config) -> int:
    return uploads.folder_bytes(config.watch.drop_dir)


def test_uploads_stop_at_the_drop_folder_budget(tmp_path: Path) -> None:
    config_path = page_config(tmp_path, uploads_max_total_mb=5, uploads_min_free_mb=0)
    config = load_config(config_path)
    with page_process(config_path) as page:
        base = f"http://127.0.0.1:{page.port}"
        browser = logged_in(base)
        answers = []
        for i in range(10):  # 10 x 1 MB of junk, 5 MB allowed
            files = {"photo": (f"junk{i}.jpg", junk(MB, i), "image/jpeg")}
            answer = browser.post(base + "/api/photos", files=files, timeout=30)
            answers.append(answer.status_code)
            if answer.status_code == 507:
                reason = answer.json()["error"]
        assert answers[:5] == [202] * 5 and set(answers[5:]) == {507}, answers
        assert "web.uploads_max_total_mb" in reason and "remove photos that are done" in reason
        assert drop_bytes(config) == 5 * MB
        # One request with many files stops at the budget too (the first file fits no more).
        files = [("photo", (f"more{i}.jpg", junk(MB, 100 + i), "image/jpeg")) for i in range(5)]
        assert browser.post(base + "/api/photos", files=files).status_code == 507
        assert drop_bytes(config) == 5 * MB
        assert not [p for p in config.watch.drop_dir.iterdir() if p.name.startswith(".")]
        assert requests.get(base + "/healthz", timeout=5).status_code == 200


@pytest.mark.slow
def test_nothing_is_taken_while_the_disk_is_at_its_free_space_floor(tmp_path: Path) -> None:
    import shutil

    config_path = page_config(tmp_path)
    config = load_config(config_path)
    config.watch.drop_dir.mkdir(parents=True)
    free_mb = shutil.disk_usage(config.watch.drop_dir).free / MB
    config_path = page_config(tmp_path, uploads_min_free_mb=round(free_mb + 100_000))
    with page_process(config_path) as page:
        base = f"http://127.0.0.1:{page.port}"
        browser = logged_in(base)
        files = {"photo": ("a.jpg", jpeg_bytes(64, 64, 1), "image/jpeg")}
        answer = browser.post(base + "/api/photos", files=files, timeout=30)
        assert answer.status_code == 507
        assert "must stay free (web.uploads_min_free_mb)" in answer.json()["error"]
        assert list(config.watch.drop_dir.iterdir()) == []


@pytest.mark.slow
def test_an_upload_killed_halfway_leaves_nothing_after_a_restart(tmp_path: Path) -> None:
    config_path = page_config(tmp_path)
    config = load_config(config_path)
    drop = config.watch.drop_dir
    with page_process(config_path) as page:
        base = f"http://127.0.0.1:{page.port}"
        browser = logged_in(base)
        boundary = "killedhalfway"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; '
            'filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        body = head + b"\xff\xd8" + b"\0" * (30 * MB) + tail
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        request = (
            f"POST /api/photos HTTP/1.1\r\nHost: 127.0.0.1:{page.port}\r\nOrigin: {base}\r\n"
            f"Cookie: {cookie}\r\nX-CSRF-Token: {browser.headers['X-CSRF-Token']}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", page.port)) as sock:
            sock.sendall(request + body)
            staged = wait_until(
                lambda: [p for p in drop.iterdir() if p.name.startswith(".")], 30, "staging"
            )
            os.kill(page.pid, signal.SIGKILL)
            page.process.wait(10)
    assert staged and all(p.exists() for p in staged)
    rules = DropRules(drop, config.watch.output_dir, recursive=False)
    assert {rules.ignore_reason(p) for p in staged} == {"hidden"}  # the worker never takes it
    with page_process(config_path) as page:
        assert list(drop.iterdir()) == []
        assert requests.get(f"http://127.0.0.1:{page.port}/healthz").status_code == 200


def test_a_live_uploads_staging_file_is_kept_and_a_dead_ones_removed(tmp_path: Path) -> None:
    tmp_path.joinpath(f".upload-{os.getpid()}-1.jpg").write_bytes(b"mine")
    tmp_path.joinpath(".upload-999999999-1.jpg").write_bytes(b"dead")
    tmp_path.joinpath(".upload-x-1.jpg").write_bytes(b"odd")
    old = tmp_path / f".upload-{os.getpid()}-2.jpg"
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    tmp_path.joinpath("photo.jpg").write_bytes(b"a photo")
    assert uploads.remove_stale_uploads(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".upload-{os.getpid()}-1.jpg",
        "photo.jpg",
    ]


@pytest.mark.slow
def test_huge_ids_are_not_found_and_odd_names_download(tmp_path: Path) -> None:
    config_path = page_config(tmp_path)
    config = load_config(config_path)
    config.watch.drop_dir.mkdir(parents=True)
    config.watch.output_dir.mkdir(parents=True)
    name = "beach\nday\r\t\x7f.instafly.jpg"
    enhanced = config.watch.output_dir / name
    enhanced.write_bytes(jpeg_bytes(64, 64, 2))
    photo = config.watch.drop_dir / "beach\nday.jpg"
    photo.write_bytes(jpeg_bytes(64, 64, 3))
    with Database(config.db_path) as db, db.transaction() as conn:
        job = enqueue_job(conn, str(photo), "sha-odd")
        assert job is not None
        finish_job(conn, job, "done", output_path=str(enhanced), score_before=1, score_after=2)
    with page_process(config_path) as page:
        base = f"http://127.0.0.1:{page.port}"
        browser = logged_in(base)
        for huge in (str(2**63), str(2**64 + 5), str(10**30), "9" * 5000):
            for path in (
                f"/api/photos/{huge}",
                f"/api/photos/{huge}/enhanced",
                f"/thumbs/job/{huge}/before",
            ):
                assert browser.get(base + path).status_code == 404, path
            assert browser.post(base + f"/actions/retry/{huge}").status_code == 404
        assert browser.get(base + f"/api/photos/{2**63 - 1}").status_code == 404  # the largest
        download = browser.get(base + f"/api/photos/{job}/enhanced")
        assert download.status_code == 200 and download.content == enhanced.read_bytes()
        disposition = download.headers["Content-Disposition"]
        assert disposition == "attachment; filename=beach_day___.instafly.jpg"
        assert browser.get(base + f"/api/photos/{job}").json()["name"] == "beach\nday.jpg"
        assert browser.get(base + f"/thumbs/job/{job}/before").status_code == 200
        assert not [line for line in page.lines if "Traceback" in line], page.lines
