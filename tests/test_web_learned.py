"""The page's "what the model learned" part (`_learned.html`): the best and the worst posts
drawn by one macro, each with its picture (when the image is still there) and real like rate."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from flask import render_template

from instaflyd.config import build_config
from instaflyd.store.learned import LearnedPost, Lessons
from instaflyd.web import create_app

SHA = "ab" * 32


def render(lessons: Lessons | None, tmp_path: Path) -> str:
    app = create_app(build_config({}, data_dir=tmp_path / "data"))
    with app.app_context():
        return render_template("_learned.html", model=SimpleNamespace(learned=lessons))


def test_the_best_and_the_worst_posts_are_drawn_alike(tmp_path: Path) -> None:
    best = LearnedPost("highest", "1", -2.0, 0.081, "beach_club", SHA)
    pruned = LearnedPost("highest", "2", -2.2, 0.064, None, None)
    worst = LearnedPost("lowest", "3", -6.0, 0.0021, "quiet", SHA)
    html = render(Lessons(1, [best, pruned], [worst], []), tmp_path)

    lists = dict(re.findall(r'<ul class="learned" id="(learned-\w+)".*?>(.*?)</ul>', html, re.S))
    assert set(lists) == {"learned-highest", "learned-lowest"}
    assert re.findall(r"<h3>(.*?)</h3>", html) == [
        "Posts it expects to do best",
        "Posts it expects to do worst",
    ]
    assert lists["learned-highest"].count("<li>") == 2
    assert f'src="/images/{SHA}"' in lists["learned-highest"]
    assert 'alt="A post by @beach_club"' in lists["learned-highest"]
    assert lists["learned-highest"].count("<img") == 1  # the pruned image is left out
    assert 'alt="A post by @quiet"' in lists["learned-lowest"]
    rates = re.findall(r"<strong>(.*?)</strong> likes per 1,000 followers", html)
    assert rates == ["81", "64", "2.1"]
    assert 'aria-label="Captured posts the box scores lowest"' in html


def test_nothing_learned_draws_nothing(tmp_path: Path) -> None:
    assert render(None, tmp_path).strip() == ""
    assert "<ul" not in render(Lessons(1, [], [], []), tmp_path)
