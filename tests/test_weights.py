"""`instaflyd weights status|fetch|import`: against a local HTTP server serving a small fake file.

The real ImageNet file cannot be downloaded here, so the fake file fails the published md5 (the
real command, as a process) and passes once the expected size and md5 are patched to the fake
file's (the same command run in-process).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import free_port, run_cli, run_cli_json, write_config

from instaflyd.cli import main
from instaflyd.config import Config, build_config
from instaflyd.daemon.weights_fetch import WeightsFetcher
from instaflyd.weights.fetch import fetch_weights
from instaflyd.weights.file import WEIGHTS_BYTES, WEIGHTS_FILE, WeightsError, partial_path
from instaflyd.weights.status import weights_status

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
    monkeypatch.setattr("instaflyd.weights.file.WEIGHTS_BYTES", len(FAKE))
    monkeypatch.setattr(
        "instaflyd.weights.file.WEIGHTS_MD5", hashlib.md5(FAKE, usedforsecurity=False).hexdigest()
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
def test_fetch_refuses_a_download_of_the_wrong_size_before_reading_it(
    config: Path, data_dir: Path, server: Server
) -> None:
    result = run_cli("weights", "fetch", "--json", config=config)
    assert result.returncode == 1
    assert result.stdout == ""
    [message] = [line for line in result.stderr.splitlines() if line.startswith("instaflyd:")]
    assert message == (
        f"instaflyd: the file at {server.url} has {len(FAKE):,} bytes, not the 58,889,256 of"
        " the ImageNet VGG16 notop file"
    )
    assert server.requests == [f"/{WEIGHTS_FILE}"]
    assert weights_dir_files(data_dir) == ["fetch.json"]  # why it failed; no partial file
    status = run_cli_json("weights", "status", "--json", config=config)
    assert status["download"]["state"] == "failed"
    assert status["message"].startswith(
        "the download of the ImageNet VGG16 weights failed: the file at"
    )
    assert status["message"].endswith(
        f"upload {WEIGHTS_FILE} on the status page, or run 'instaflyd weights import FILE'"
        " with a copy of it"
    )


def test_fetch_refuses_a_download_whose_md5_does_not_match(
    config: Path, data_dir: Path, server: Server, monkeypatch, capsys
) -> None:
    monkeypatch.setattr("instaflyd.weights.file.WEIGHTS_BYTES", len(FAKE))
    code, out, err = run_in_process(capsys, "--config", str(config), "weights", "fetch")
    assert (code, out) == (1, "")
    md5 = hashlib.md5(FAKE, usedforsecurity=False).hexdigest()
    assert err.strip() == (
        f"instaflyd: the file at {server.url} is not the ImageNet VGG16 notop file"
        f" (md5 mismatch: {md5}, expected 6d6bbae143d832006294945121d1f1fc)"
    )
    assert weights_dir_files(data_dir) == ["fetch.json"]  # the wrong file is not kept to resume


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
    assert err.strip() == f"instaflyd: cannot download {missing}: HTTP 404 File not found"
    assert weights_dir_files(data_dir) == ["fetch.json"]


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
    monkeypatch.setattr("instaflyd.weights.file.WEIGHTS_BYTES", len(FAKE))
    source = tmp_path / "imposter.h5"
    source.write_bytes(FAKE)
    code, _, err = run_in_process(capsys, "--config", str(config), "weights", "import", str(source))
    assert code == 1
    md5 = hashlib.md5(FAKE, usedforsecurity=False).hexdigest()
    assert f"is not the ImageNet VGG16 notop file: md5 {md5}, expected 6d6bbae1" in err
    assert weights_dir_files(data_dir) == []  # the temp copy is gone too


@pytest.mark.slow
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


# --- resuming, offline, and the daemon's background fetch ---------------------------------------


class RangeHandler(BaseHTTPRequestHandler):
    """Serves FAKE with HTTP Range support; the first `cut` responses stop after half the file."""

    def do_GET(self) -> None:
        server = self.server
        server.requests.append(self.headers.get("Range"))  # type: ignore[attr-defined]
        start = 0
        ranged = self.headers.get("Range")
        if ranged and server.ranges:  # type: ignore[attr-defined]
            start = int(ranged.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(FAKE) - 1}/{len(FAKE)}")
        else:
            self.send_response(200)
        body = FAKE[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut > 0:  # type: ignore[attr-defined]
            server.cut -= 1  # type: ignore[attr-defined]
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the line drops mid-download
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def range_server(cut: int, ranges: bool = True) -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.requests, httpd.cut, httpd.ranges = [], cut, ranges  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def fetch_config(data_dir: Path, url: str) -> Config:
    return build_config({"model": {"weights_url": url}}, data_dir=data_dir)


def test_a_cut_download_resumes_where_it_stopped(data_dir: Path, fake_is_genuine) -> None:
    with range_server(cut=1) as httpd:
        config = fetch_config(data_dir, f"http://127.0.0.1:{httpd.server_port}/{WEIGHTS_FILE}")
        with pytest.raises(WeightsError, match="was cut after 10,250 of 20,500 bytes") as cut:
            fetch_weights(config)
        assert cut.value.offline
        assert partial_path(config).read_bytes() == FAKE[: len(FAKE) // 2]
        status = weights_status(config)
        assert (status.ok, status.download.state, status.download.bytes) == (False, "failed", 10250)
        assert status.message.startswith(
            "this box cannot reach the internet to download the ImageNet VGG16 weights"
            " (0.0 of 0.0 MB so far; it tries again by itself): upload "
        )
        seen: list[tuple[int, int]] = []
        assert fetch_weights(config, progress=lambda have, total: seen.append((have, total))).ok
        # The second request asked for the rest only, and got it.
        assert httpd.requests == [None, "bytes=10250-"]  # type: ignore[attr-defined]
        assert seen[-1] == (len(FAKE), len(FAKE))
        assert seen[0][0] > len(FAKE) // 2  # counting went on from the half it had
    assert (data_dir / "weights" / WEIGHTS_FILE).read_bytes() == FAKE
    assert weights_dir_files(data_dir) == [WEIGHTS_FILE]  # no partial file, no fetch.json
    assert weights_status(config).download is None


def test_a_server_without_ranges_sends_it_all_again(data_dir: Path, fake_is_genuine) -> None:
    with range_server(cut=1, ranges=False) as httpd:
        config = fetch_config(data_dir, f"http://127.0.0.1:{httpd.server_port}/{WEIGHTS_FILE}")
        with pytest.raises(WeightsError):
            fetch_weights(config)
        assert fetch_weights(config).ok
        assert httpd.requests == [None, "bytes=10250-"]  # type: ignore[attr-defined]
    assert (data_dir / "weights" / WEIGHTS_FILE).read_bytes() == FAKE  # not the half twice


def test_without_internet_the_status_says_so_and_names_the_ways_in(data_dir: Path) -> None:
    config = fetch_config(data_dir, f"http://127.0.0.1:{free_port()}/{WEIGHTS_FILE}")
    with pytest.raises(WeightsError, match="no connection to the internet") as offline:
        fetch_weights(config)
    assert offline.value.offline
    status = weights_status(config)
    assert status.download.offline
    assert status.message == (
        "this box cannot reach the internet to download the ImageNet VGG16 weights (0.0 of 58.9"
        f" MB so far; it tries again by itself): upload {WEIGHTS_FILE} on the status page, or"
        " run 'instaflyd weights import FILE' with a copy of it"
    )


@pytest.mark.slow
def test_the_daemon_fetches_missing_weights_in_a_background_process(
    data_dir: Path, tmp_path: Path
) -> None:
    md5 = hashlib.md5(FAKE, usedforsecurity=False).hexdigest()

    class FakeGenuineFetcher(WeightsFetcher):  # the child checks against the fake file
        def argv(self) -> list[str]:
            return [
                sys.executable, "-c",
                "import sys, instaflyd.weights.file as w; from instaflyd.cli import main;"
                f" w.WEIGHTS_BYTES = {len(FAKE)}; w.WEIGHTS_MD5 = {md5!r};"
                f" sys.exit(main(['--data-dir', {str(data_dir)!r}, '--config', {str(self.path)!r},"
                " 'weights', 'fetch']))",
            ]  # fmt: skip

    with range_server(cut=1) as httpd:
        url = f"http://127.0.0.1:{httpd.server_port}/{WEIGHTS_FILE}"
        path = write_config(tmp_path / "f.yaml", {"model": {"weights_url": url}})
        config = fetch_config(data_dir, url)
        fetcher = FakeGenuineFetcher(config, first_retry=0.2)
        fetcher.path = path  # type: ignore[attr-defined]
        fetcher.wanted = lambda: not (data_dir / "weights" / WEIGHTS_FILE).exists()  # type: ignore[method-assign]
        fetcher.tick(now=0.0)
        first = fetcher.child
        assert first is not None and first.name == "weights"
        first.process.wait(30)
        fetcher.tick(now=1.0)  # the first try was cut: a retry waits 0.2 s
        assert (fetcher.child, fetcher.failures, fetcher.next_try) == (None, 1, 1.2)
        fetcher.tick(now=1.3)
        assert fetcher.child is not None and fetcher.child is not first
        assert fetcher.child.process.wait(30) == 0
        fetcher.tick(now=2.0)
        assert (fetcher.child, fetcher.failures) == (None, 0)
        assert httpd.requests == [None, "bytes=10250-"]  # type: ignore[attr-defined]
    assert (data_dir / "weights" / WEIGHTS_FILE).read_bytes() == FAKE
    fetcher.tick(now=100.0)
    assert fetcher.child is None  # nothing more to fetch
