"""Labels from the store, the owner split, and the validation metrics (no TensorFlow here)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import sql_scalar

from instaflyd.model.labels import (
    LabelledPost,
    NotEnoughData,
    labelled_posts,
    owner_draw,
    split_by_owner,
)
from instaflyd.model.metrics import pairwise_accuracy, ranks, spearman, validation_metrics
from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.images import record_image
from instaflyd.store.posts import attach_image, upsert_account, upsert_post


@pytest.fixture
def store(tmp_path: Path):
    db = Database(tmp_path / "instafly.db")
    yield db, ImageFiles(tmp_path / "images")
    db.close()


def add_post(db, files, post_id, media_type="photo", likes=10, followers=1000, image=True):
    with db.transaction() as conn:
        owner = AccountRecord(f"owner-{post_id}", follower_count=followers)
        upsert_post(conn, PostRecord(post_id, media_type, owner=owner, like_count=likes))
        if image:
            pixels = f"pixels of {post_id}".encode()
            stored = files.put(pixels, "jpg")
            record_image(conn, stored, 10, 10, len(pixels))  # as stored: its file's size
            attach_image(conn, post_id, stored.sha256)


def test_labels_skip_hidden_likes_videos_reels_missing_images_and_unknown_followers(store) -> None:
    db, files = store
    add_post(db, files, "1", likes=50, followers=1000)
    add_post(db, files, "2", media_type="carousel", likes=0, followers=400)
    add_post(db, files, "3", likes=None)  # likes hidden
    add_post(db, files, "4", media_type="video")
    add_post(db, files, "5", media_type="reel")
    add_post(db, files, "6", image=False)
    add_post(db, files, "7", followers=None)  # owner's profile never seen
    add_post(db, files, "8")
    files.path_for(sql_scalar(db, "SELECT image_sha256 FROM posts WHERE id = '8'"), "jpg").unlink()

    posts = labelled_posts(db.conn, files)

    assert [post.post_id for post in posts] == ["1", "2"]
    assert posts[0].target == pytest.approx(math.log(50 / 1000))
    # no likes at all: half a like, finite and below any post with likes
    assert posts[1].target == pytest.approx(math.log(0.5 / 400))
    assert posts[0].image_path.read_bytes() == b"pixels of 1"


def test_the_latest_follower_count_is_the_one_used(store) -> None:
    db, files = store
    add_post(db, files, "1", likes=30, followers=1000)
    with db.transaction() as conn:
        upsert_account(conn, AccountRecord("owner-1", follower_count=3000))
    [post] = labelled_posts(db.conn, files)
    assert post.target == pytest.approx(math.log(30 / 3000))


def posts_of(owners: list[str], per_owner: int = 3) -> list[LabelledPost]:
    return [
        LabelledPost(f"{owner}-{i}", owner, 10 + i, 1000, f"sha{owner}{i}", Path("x.jpg"))
        for owner in owners
        for i in range(per_owner)
    ]


def test_the_split_never_puts_an_owner_on_both_sides_and_is_deterministic() -> None:
    owners = [f"user{i}" for i in range(40)]
    split = split_by_owner(posts_of(owners), fraction=0.25, seed=7)
    train_owners = {post.owner_id for post in split.train}
    val_owners = {post.owner_id for post in split.validation}
    assert train_owners.isdisjoint(val_owners)
    assert train_owners | val_owners == set(owners)
    assert split.samples == 120
    assert 4 <= len(val_owners) <= 18  # about a quarter of 40
    assert val_owners == {owner for owner in owners if owner_draw(owner, 7) < 0.25}
    again = split_by_owner(list(reversed(posts_of(owners))), fraction=0.25, seed=7)
    assert {post.owner_id for post in again.validation} == val_owners
    other_seed = split_by_owner(posts_of(owners), fraction=0.25, seed=8)
    assert {post.owner_id for post in other_seed.validation} != val_owners


def test_owners_keep_their_side_when_new_owners_arrive() -> None:
    before = split_by_owner(posts_of([f"user{i}" for i in range(30)]), 0.2, seed=0)
    after = split_by_owner(posts_of([f"user{i}" for i in range(60)]), 0.2, seed=0)
    before_val = {post.owner_id for post in before.validation}
    after_val = {post.owner_id for post in after.validation}
    assert before_val == {owner for owner in after_val if int(owner[4:]) < 30}


def test_few_owners_still_give_both_sides_one_owner_at_least() -> None:
    for seed in range(20):
        split = split_by_owner(posts_of(["a", "b"]), fraction=0.2, seed=seed)
        assert len({post.owner_id for post in split.train}) == 1
        assert len({post.owner_id for post in split.validation}) == 1
    split = split_by_owner(posts_of(["a", "b", "c"]), fraction=0.99, seed=0)
    assert len({post.owner_id for post in split.train}) == 1


def test_a_split_without_some_rows_keeps_the_order_of_the_rest() -> None:
    split = split_by_owner(posts_of(["a", "b", "c", "d"]), fraction=0.5, seed=3)
    rows = [0, len(split.train)]  # the first training post and the first validation post
    smaller = split.without(rows)
    assert smaller.train == split.train[1:]
    assert smaller.validation == split.validation[1:]
    assert [p.post_id for p in smaller.posts] == [
        p.post_id for i, p in enumerate(split.posts) if i not in rows
    ]


def test_one_owner_is_not_enough_to_validate() -> None:
    with pytest.raises(NotEnoughData, match=r"at least 2 accounts .* there are 1"):
        split_by_owner(posts_of(["only"]), fraction=0.2, seed=0)


def test_ranks_average_ties() -> None:
    assert ranks(np.array([10.0, 30.0, 20.0, 30.0])).tolist() == [0.0, 2.5, 1.0, 2.5]


def test_spearman_values() -> None:
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1)
    # monotone transforms do not matter; one swapped pair of 4: 1 - 6*2/(4*15) = 0.8
    assert spearman(np.array([1, 2, 3, 4.0]), np.exp([1, 3, 2, 4.0])) == pytest.approx(0.8)
    assert spearman(np.array([1, 1, 1.0]), np.array([1, 2, 3.0])) is None
    assert spearman(np.array([1.0]), np.array([2.0])) is None


def test_pairwise_accuracy_counts_only_pairs_of_the_same_owner() -> None:
    owners = np.array(["a", "a", "a", "b", "b"])
    truth = np.array([1.0, 2.0, 3.0, 5.0, 5.0])  # b's two posts tie: no pair
    # a: (1,2) right, (1,3) right, (2,3) wrong -> 2/3; cross-owner order is ignored
    guess = np.array([0.0, 9.0, 5.0, -100.0, 100.0])
    assert pairwise_accuracy(guess, truth, owners) == pytest.approx(2 / 3)
    # a tie in the predictions is half right
    assert (
        pairwise_accuracy(np.array([1.0, 1.0]), np.array([1.0, 2.0]), np.array(["a", "a"])) == 0.5
    )
    assert pairwise_accuracy(guess[3:], truth[3:], owners[3:]) is None


def test_validation_metrics_have_the_names_train_reports() -> None:
    metrics = validation_metrics(np.array([1.0, 2.0]), np.array([1.0, 4.0]), np.array(["a", "a"]))
    assert metrics == {
        "val_mse": 2.0,
        "val_srcc": pytest.approx(1.0),
        "val_pairwise_accuracy": 1.0,
        "val_samples": 2,
    }
