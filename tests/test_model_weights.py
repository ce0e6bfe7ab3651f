"""`instaflyd weights status|fetch|import`: against a local HTTP server serving a small fake file.

The real ImageNet file cannot be downloaded here, so the fake file fails the published md5 (the
real command, as a process) and passes once the expected size and md5 are patched to the fake
file's (the same command run in-process).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import run_cli, run_cli_json, write_config

from instaflyd.cli import main
from instaflyd.status.weights import WEIGHTS_BYTES, WEIGHTS_FILE

FAKE = b"not really VGG16, just bytes to download " * 500


@dataclass
class Server:
    url: str
    requests: list[str]


class RecordingHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    served = tmp_path / "served"
    served.mkdir()
    (served / WEIGHTS_FILE).write_bytes(FAKE)
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(RecordingHandler, directory=str(served))
    )
    httpd.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{httpd.server_port}/{WEIGHTS_FILE}", httpd.requests)  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def config(tmp_path: Path, data_dir: Path, server: Server) -> Path:
    """ImageNet weights configured (the default), downloaded from the local server."""
    return write_config(
        tmp_path / "instafly.yaml",
        {"data_dir": str(data_dir), "model": {"weights_url": server.url}},
    )


@pytest.fixture
def fake_is_genuine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the fake file the expected one (in this process only)."""
    monkeypatch.setattr("instaflyd.status.weights.WEIGHTS_BYTES", len(FAKE))
    monkeypatch.setattr(
        "instaflyd.status.weights.WEIGHTS_MD5", hashlib.md5(FAKE, usedforsecurity=False).hexdigest()
    )


def weights_dir_files(data_dir: Path) -> list[str]:
    folder = data_dir / "weights"
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_says_the_weights_are_missing_and_how_to_get_them(config: Path) -> None:
    status = run_cli_json("weights", "status", "--json", config=config)
    assert (status["setting"], status["present"], status["ok"]) == ("imagenet", False, False)
    assert status["path"].endswith(f"weights/{WEIGHTS_FILE}")
    assert "instaflyd weights fetch" in status["message"]
    assert "instaflyd weights import FILE" in status["message"]


@pytest.mark.slow
def test_fetch_refuses_a_download_whose_md5_does_not_match(
    config: Path, data_dir: Path, server: Server
) -> None:
    result = run_cli("weights", "fetch", "--json", config=config)
    assert result.returncode == 1
    assert result.stdout == ""
    [message] = [line for line in result.stderr.splitlines() if line.startswith("instaflyd:")]
    assert message.startswith(f"instaflyd: the file at {server.url} is not the ImageNet VGG16")
    assert "md5 mismatch, expected 6d6bbae143d832006294945121d1f1fc" in message
    assert server.requests == [f"/{WEIGHTS_FILE}"]
    assert weights_dir_files(data_dir) == []  # nothing kept, not even a temp file


def test_fetch_keeps_a_verified_download_and_does_not_fetch_twice(
    config: Path, data_dir: Path, server: Server, fake_is_genuine, capsys
) -> None:
    code, out, _ = run_in_process(capsys, "--config", str(config), "weights", "fetch", "--json")
    assert code == 0
    status = json.loads(out)
    assert (status["present"], status["ok"], status["message"]) == (
        True,
        True,
        "ImageNet VGG16 weights present",
    )
    assert (data_dir / "weights" / WEIGHTS_FILE).read_bytes() == FAKE
    assert weights_dir_files(data_dir) == [WEIGHTS_FILE]

    code, out, _ = run_in_process(capsys, "--config", str(config), "weights", "fetch", "--json")
    assert (code, json.loads(out)["ok"]) == (0, True)
    assert len(server.requests) == 1  # already present: not downloaded again


def test_fetch_from_a_missing_url_fails_with_one_line(
    tmp_path: Path, data_dir: Path, server: Server, fake_is_genuine, capsys
) -> None:
    missing = server.url.replace(WEIGHTS_FILE, "gone.h5")
    config = write_config(
        tmp_path / "gone.yaml", {"data_dir": str(data_dir), "model": {"weights_url": missing}}
    )
    code, out, err = run_in_process(capsys, "--config", str(config), "weights", "fetch")
    assert (code, out) == (1, "")
    assert f"instaflyd: cannot download {missing}: URL fetch failure" in err
    assert "404" in err
    assert weights_dir_files(data_dir) == []


def test_import_verifies_and_copies_the_file(
    config: Path, data_dir: Path, tmp_path: Path, fake_is_genuine, capsys
) -> None:
    source = tmp_path / "copy.h5"
    source.write_bytes(FAKE)
    code, out, _ = run_in_process(
        capsys, "--config", str(config), "weights", "import", str(source), "--json"
    )
    assert code == 0
    assert json.loads(out)["ok"] is True
    assert (data_dir / "weights" / WEIGHTS_FILE).read_bytes() == FAKE
    assert weights_dir_files(data_dir) == [WEIGHTS_FILE]
    code, out, _ = run_in_process(capsys, "--config", str(config), "weights", "status")
    assert (code, out) == (
        0,
        f"ImageNet VGG16 weights present: {data_dir / 'weights' / WEIGHTS_FILE}\n",
    )


def test_import_refuses_a_file_of_the_wrong_size(
    config: Path, data_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "small.h5"
    source.write_bytes(FAKE)
    result = run_cli("weights", "import", source, config=config)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"instaflyd: {source} has {len(FAKE):,} bytes; the ImageNet VGG16 notop file "
        f"({WEIGHTS_FILE}) has {WEIGHTS_BYTES:,}"
    )
    assert weights_dir_files(data_dir) == []


def test_import_refuses_a_file_of_the_right_size_but_another_md5(
    config: Path, data_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr("instaflyd.status.weights.WEIGHTS_BYTES", len(FAKE))
    source = tmp_path / "imposter.h5"
    source.write_bytes(FAKE)
    code, _, err = run_in_process(capsys, "--config", str(config), "weights", "import", str(source))
    assert code == 1
    md5 = hashlib.md5(FAKE, usedforsecurity=False).hexdigest()
    assert f"is not the ImageNet VGG16 notop file: md5 {md5}, expected 6d6bbae1" in err
    assert weights_dir_files(data_dir) == []  # the temp copy is gone too


def test_import_needs_a_file_and_missing_files_are_named(config: Path, tmp_path: Path) -> None:
    result = run_cli("weights", "import", config=config)
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "instaflyd: weights import needs FILE (and only import takes one)",
    )
    result = run_cli("weights", "import", tmp_path / "nope.h5", config=config)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"instaflyd: cannot read {tmp_path / 'nope.h5'}: No such file or directory"
    )
