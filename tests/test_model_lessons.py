"""What a trained model learned, in pictures: found by the trainer, stored with the version,
read by the page without TensorFlow (model/lessons.py, store/learned.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instaflyd.model.labels import LabelledPost
from instaflyd.model.lessons import edit_gains, scored_extremes
from instaflyd.store import Database
from instaflyd.store.jobs import enqueue_job, finish_job
from instaflyd.store.learned import lessons


def post(n: int, likes: int, followers: int = 1000) -> LabelledPost:
    return LabelledPost(str(n), "o", likes, followers, "0" * 64, Path("x.jpg"))


def test_the_extremes_are_the_highest_and_lowest_scores_never_both() -> None:
    posts = [post(n, likes=n) for n in range(5)]
    scores = np.array([0.1, 0.9, float("nan"), -0.5, 0.3])
    highest, lowest = scored_extremes(posts, scores, count=3)
    assert [p.post_id for p in highest] == ["1", "4"]  # 4 finite scores: two each at most
    assert [p.post_id for p in lowest] == ["3", "0"]
    assert highest[0].like_rate == pytest.approx(1 / 1000)
    assert highest[0].score == pytest.approx(0.9)


def test_edit_gains_average_the_finished_photos_per_edit_and_direction(tmp_path: Path) -> None:
    with Database(tmp_path / "instafly.db") as db, db.transaction() as conn:
        for n, (params, gain) in enumerate([
            ({"exposure": 0.2, "vignette": -0.1}, 0.3),
            ({"exposure": 0.1, "saturation": 0.004}, 0.1),  # saturation too small to count
            ({"exposure": -0.2}, -0.05),
        ]):  # fmt: skip
            sidecar = tmp_path / f"{n}.json"
            sidecar.write_text(json.dumps({"params": params}))
            job = enqueue_job(conn, str(tmp_path / f"{n}.jpg"), f"sha{n}")
            finish_job(conn, job, "done", sidecar_path=str(sidecar), score_before=-3.0,
                       score_after=-3.0 + gain)  # fmt: skip
        broken = enqueue_job(conn, str(tmp_path / "b.jpg"), "shab")
        (tmp_path / "b.json").write_text("not json")
        finish_job(conn, broken, "done", sidecar_path=str(tmp_path / "b.json"), score_before=0.0,
                   score_after=1.0)  # fmt: skip
        gains = edit_gains(conn)
    assert [(g.edit, g.direction, g.photos) for g in gains] == [
        ("vignette", -1, 1), ("exposure", 1, 2), ("exposure", -1, 1),
    ]  # fmt: skip
    assert [g.mean_gain for g in gains] == pytest.approx([0.3, 0.2, -0.05])


@pytest.mark.slow
def test_a_trained_version_keeps_its_best_and_worst_posts_with_their_real_rates(
    trained_data_dir: Path,
) -> None:
    with Database(trained_data_dir / "instafly.db") as db:
        learned = lessons(db.conn, 1)
        real = dict(db.conn.execute("SELECT id, like_rate FROM labelled_posts").fetchall())
    assert learned is not None
    assert len(learned.highest) == len(learned.lowest) == 6
    assert not {p.post_id for p in learned.highest} & {p.post_id for p in learned.lowest}
    for p in learned.highest + learned.lowest:
        assert p.like_rate == pytest.approx(real[p.post_id])  # what the post really got
        assert p.image_sha256 is not None
    assert [p.score for p in learned.highest] == sorted(
        (p.score for p in learned.highest), reverse=True
    )
    assert min(p.score for p in learned.highest) > max(p.score for p in learned.lowest)
    # The generated posts' like rate follows brightness; the model learned it: its favourites
    # really did better than the posts it scores lowest.
    assert np.mean([p.like_rate for p in learned.highest]) > np.mean(
        [p.like_rate for p in learned.lowest]
    )
