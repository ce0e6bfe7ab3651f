"""The page's household wording: scores as likes per 1,000 followers, edits in words, the model
as pairs out of 100 (instaflyd.web.formatting)."""

from __future__ import annotations

import math

import pytest

from instaflyd.web.formatting import (
    EDIT_WORDS,
    change_text,
    edits_in_words,
    likes_per_1000,
    likes_text,
    model_quality,
    pairs_of_100,
    score_as_likes,
    score_change,
)


def test_the_issues_example_reads_53_to_59_plus_12_percent() -> None:
    change = score_change(math.log(0.053), math.log(0.0594))
    assert change is not None
    assert change.text == "expected likes per 1,000 followers: 53 → 59 (+12%)"
    assert (change.before, change.after, change.change, change.up) == ("53", "59", "+12%", True)


@pytest.mark.parametrize(
    ("per_1000", "text"),
    [(1234.4, "1,234"), (53.2, "53"), (9.96, "10"), (5.34, "5.3"), (1.0, "1.0"),
     (0.4234, "0.42"), (0.0071, "0.0071"), (None, "–")],
)  # fmt: skip
def test_likes_are_rounded_to_what_a_person_can_read(per_1000: float | None, text: str) -> None:
    assert likes_text(per_1000) == text


def test_a_score_is_the_log_of_likes_per_follower() -> None:
    assert likes_per_1000(math.log(0.053)) == pytest.approx(53.0)
    assert likes_per_1000(None) is None
    assert likes_per_1000(float("nan")) is None
    assert likes_per_1000(1e6) == pytest.approx(1000 * math.exp(50))  # no overflow
    assert score_as_likes(math.log(0.0042)) == "4.2 likes per 1,000 followers"


@pytest.mark.parametrize(
    ("before", "after", "text"),
    [(0.0, math.log(1.12), "+12%"), (0.0, math.log(0.965), "−3.5%"), (0.0, math.log(1.03), "+3%"),
     (0.0, 0.0, "±0%"), (0.0, 0.0001, "±0%"), (0.0, math.log(2.0), "+100%"), (None, 0.0, "–")],
)  # fmt: skip
def test_changes_are_a_share_of_the_likes(before: float | None, after: float, text: str) -> None:
    assert change_text(before, after) == text


def test_a_loss_is_said_as_one() -> None:
    change = score_change(math.log(0.06), math.log(0.05))
    assert change is not None and not change.up
    assert change.text == "expected likes per 1,000 followers: 60 → 50 (−17%)"
    assert score_change(None, 1.0) is None


def test_edits_are_said_in_words_strongest_first() -> None:
    edits = {
        "exposure": 0.1,  # 20% of its limit: a little
        "temperature": 0.05,  # 50%
        "saturation": 0.4,  # 80%: the strongest
        "vignette": -0.06,  # 20%: darker corners, slight
        "tint": 0.001,  # too small to see
        "contrast": 0.0,
    }
    assert (
        edits_in_words(edits) == "much more colourful, warmer, a little brighter, slight vignette"
    )


def test_edits_in_the_other_direction_and_at_full_strength() -> None:
    assert edits_in_words({"exposure": -0.5, "vignette": -0.3, "gamma": 0.2}) == (
        "much darker, strong vignette, brighter mid-tones"
    )
    assert edits_in_words({"contrast": -0.2}) == "softer contrast"
    assert edits_in_words({}) == ""
    assert edits_in_words({"tint": 0.005, "exposure": 0.01}) == ""  # nothing a person would see


def test_an_edit_the_page_does_not_know_is_said_by_its_name() -> None:
    assert edits_in_words({"clarity": 0.25}) == "clarity +0.25"


def test_the_wording_knows_every_edit_of_the_enhancer_with_its_limit() -> None:
    filters = pytest.importorskip("instaflyd.enhance.filters")
    assert {e.name: e.limit for e in filters.EDITS} == {
        name: words.limit for name, words in EDIT_WORDS.items()
    }


def test_the_model_is_said_as_pairs_out_of_100() -> None:
    assert pairs_of_100(0.8123) == "81 of 100"
    assert pairs_of_100(None) == "–"
    assert pairs_of_100(1.2) == "100 of 100"
    assert model_quality(0.72) == "how well it predicts which of two posts does better: 72 of 100"


def test_the_log_names_the_page_addresses_that_answer_lan_first() -> None:
    from instaflyd.network import lan_address
    from instaflyd.web.server import page_urls

    urls = page_urls("0.0.0.0", 8081)
    assert urls[-1] == "http://127.0.0.1:8081/ (on this box)"
    assert "0.0.0.0" not in " ".join(urls)
    if not lan_address().startswith("127."):
        assert urls[0] == f"http://{lan_address()}:8081/"
    assert page_urls("192.168.1.5", 80) == ["http://192.168.1.5:80/"]
    assert page_urls("::1", 8081) == ["http://[::1]:8081/"]


def test_the_tls_note_follows_the_recorded_cause() -> None:
    from types import SimpleNamespace as Device

    from instaflyd.web.formatting import TLS_EITHER, TLS_NOT_TRUSTED, TLS_PINNING, tls_note

    new_phone = Device(trusts_box=False, tls_not_trusted=3, tls_pinned=0)
    app_user = Device(trusts_box=True, tls_not_trusted=2, tls_pinned=5)  # trusted since
    assert tls_note([new_phone]) == TLS_NOT_TRUSTED  # a browser that does not trust it yet
    assert "install the certificate" in TLS_NOT_TRUSTED and "pins" not in TLS_NOT_TRUSTED
    assert tls_note([app_user]) == TLS_PINNING
    assert tls_note([new_phone, app_user]) == TLS_NOT_TRUSTED + " " + TLS_PINNING
    assert tls_note([]) == TLS_EITHER
