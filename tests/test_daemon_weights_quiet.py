"""Offline, the daemon's weights fetch says why once, without the long URL, then stays quiet
(the page keeps saying it); a new reason is said again."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from instaflyd.config import build_config
from instaflyd.daemon.weights_fetch import WeightsFetcher

URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_notop.h5"


class FailingFetcher(WeightsFetcher):
    """The real child-process machinery, with a child that fails as an offline fetch does."""

    reason = "no connection to the internet"

    def argv(self) -> list[str]:
        line = f"12:00:00 weights[9] WARNING instafly.weights: {URL}: {self.reason}"
        return [sys.executable, "-c", f"print({line!r}); raise SystemExit(1)"]


def run_once(fetcher: FailingFetcher, now: float) -> None:
    fetcher.next_try = 0.0  # due now (the real wait doubles from a minute)
    fetcher.tick(now=now)
    assert fetcher.child is not None
    fetcher.child.process.wait(30)
    fetcher.child._relay.join(5)  # the output is read
    fetcher.tick(now=now + 0.01)


def test_the_offline_retry_logs_one_line_then_is_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    config = build_config({"model": {"weights": "imagenet"}}, data_dir=tmp_path)
    fetcher = FailingFetcher(config, first_retry=1000.0)
    fetcher.wanted = lambda: True  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="instafly.daemon")
    for k in range(3):
        run_once(fetcher, now=10.0 * (k + 1))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "fetching the weights failed: the download server: no connection to the internet;"
        " trying again by itself"
    ]
    assert fetcher.failures == 3
    assert URL not in capsys.readouterr().err  # the child's own line is not relayed
    fetcher.reason = "the server answered 404"
    run_once(fetcher, now=100.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and "404" in warnings[1]
