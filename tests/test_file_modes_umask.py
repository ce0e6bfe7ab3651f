"""Photos, images and models on disk are readable only by the service's user and group
(issue 20, item 11): files are written with what the umask allows (0640 under the unit's
UMask=0027), never forced to 0644, and folders 0750. Tried in real processes started with the
unit's umask: the store's writer, and the page receiving an upload over a real socket.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers import REPO, cli_env, free_port, jpeg_bytes, write_config
from support_daemon import TEST_PASSWORD, give_password
from support_page import page_process

WRITER = """
import sys
from pathlib import Path
from instaflyd.fsutil import atomic_directory, atomic_write_bytes
from instaflyd.store import ImageFiles
root = Path(sys.argv[1])
atomic_write_bytes(root / "plain.bin", b"x")
with atomic_directory(root / "v0001") as folder:
    (folder / "model.keras").write_bytes(b"m")
ImageFiles(root / "images").put(bytes.fromhex(sys.argv[2]), "jpg")
"""


def modes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)) if path != root else ".": oct(path.stat().st_mode & 0o777)
        for path in [root, *root.rglob("*")]
    }


def write_under(umask: int, root: Path) -> dict[str, str]:
    root.mkdir()
    subprocess.run(
        [sys.executable, "-c", WRITER, str(root), jpeg_bytes(32, 32, 1).hex()],
        check=True,
        env=cli_env(),
        cwd=REPO,
        preexec_fn=lambda: os.umask(umask),
    )
    found = modes(root)
    del found["."]
    return found


def test_the_store_writes_what_the_umask_allows(tmp_path: Path) -> None:
    private = write_under(0o027, tmp_path / "private")
    assert private["plain.bin"] == "0o640"
    assert private["v0001"] == "0o750" and private["v0001/model.keras"] == "0o640"
    images = {name: mode for name, mode in private.items() if name.startswith("images")}
    assert images and all(
        mode == ("0o640" if name.endswith(".jpg") else "0o750") for name, mode in images.items()
    ), images
    # A wider umask is respected too, not overridden.
    open_ = write_under(0o022, tmp_path / "open")
    assert open_["plain.bin"] == "0o644" and open_["v0001"] == "0o755"


@pytest.mark.slow
def test_an_upload_lands_private_under_the_units_umask(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    give_password(data_dir)
    config = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(data_dir),
            "web": {"host": "127.0.0.1", "port": free_port()},
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
        },
    )
    old = os.umask(0o027)  # the page process inherits it, as from the unit's UMask=0027
    try:
        context = page_process(config)
        page = context.__enter__()
    finally:
        os.umask(old)
    try:
        base = f"http://127.0.0.1:{page.port}"
        browser = requests.Session()
        browser.headers["Origin"] = base
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(base + "/login").text)
        assert token
        browser.post(base + "/login", data={"password": TEST_PASSWORD, "csrf_token": token[1]})
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', browser.get(base + "/").text)
        assert csrf
        files = {"photo": ("beach.jpg", jpeg_bytes(64, 64, 2), "image/jpeg")}
        answer = browser.post(base + "/api/photos", files=files, headers={"X-CSRF-Token": csrf[1]})
        assert answer.status_code == 202, answer.text
        job = answer.json()["photos"][0]["id"]
        assert browser.get(f"{base}/thumbs/job/{job}/before").status_code == 200
    finally:
        context.__exit__(None, None, None)
    drop = modes(data_dir / "drop")
    assert drop == {".": "0o750", "beach.jpg": "0o640"}, drop
    kept = modes(data_dir / "thumbnails")
    assert set(kept.values()) == {"0o750", "0o640"}, kept
