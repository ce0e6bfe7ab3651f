"""The page says a photo is coming (a file was chosen): the app touches the file the worker
watches, so that the model starts loading while the photo is still on its way."""

from __future__ import annotations

import os
import time

from flask.testing import FlaskClient
from helpers import jpeg_bytes
from test_web_photos import client, config, send, token_of  # noqa: F401  (fixtures)

from instaflyd.config import Config


def test_an_announced_upload_touches_the_workers_file(
    client: FlaskClient,  # noqa: F811  (the fixture imported above)
    config: Config,  # noqa: F811
) -> None:
    wanted = config.enhancer_wanted_path
    assert not wanted.exists()
    assert client.post("/api/photos/coming").status_code in (400, 403)  # no CSRF token: refused
    assert not wanted.exists()
    token = token_of(client)
    response = client.post("/api/photos/coming", headers={"X-CSRF-Token": token})
    assert (response.status_code, response.get_json()) == (202, {"loading": True})
    assert time.time() - wanted.stat().st_mtime < 5
    os.utime(wanted, (1_000_000_000, 1_000_000_000))  # long ago
    assert send(client, (jpeg_bytes(64, 48), "a.jpg"), token=token).status_code == 202
    assert time.time() - wanted.stat().st_mtime < 5  # sending says so too
