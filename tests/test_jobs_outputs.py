"""Output names (never overwriting, always short enough for the file system) and the sidecar
record (written and read back in one place, bad files refused)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instaflyd.jobs.outputs import (
    MAX_SIDECAR_BYTES,
    NAME_MAX,
    Duplicate,
    Enhancement,
    Sidecar,
    UnreadableSidecar,
    output_paths,
    read_sidecar,
    write_sidecar,
)

REJECTED = Sidecar("rejected", "in.jpg", reason="not an image")


def test_a_251_byte_name_is_shortened_and_two_such_names_stay_apart(tmp_path: Path) -> None:
    stem = "a" * 247  # "<stem>.jpg" is 251 bytes: "<stem>.instafly.json" would be 261
    photo, sidecar = output_paths(tmp_path, stem)
    assert max(len(photo.name.encode()), len(sidecar.name.encode())) == NAME_MAX
    assert photo.name == "a" * 241 + ".instafly.jpg"
    write_sidecar(sidecar, REJECTED)  # the file system takes it
    photo.write_bytes(b"jpeg")

    second, second_sidecar = output_paths(tmp_path, stem + "b")  # the same once shortened
    assert (second.name, second_sidecar.name) == (
        "a" * 239 + "-2.instafly.jpg",
        "a" * 239 + "-2.instafly.json",
    )
    write_sidecar(second_sidecar, REJECTED)
    assert output_paths(tmp_path, stem)[0].name == "a" * 239 + "-3.instafly.jpg"


def test_a_long_name_is_cut_between_characters(tmp_path: Path) -> None:
    stem = "é" * 130  # 260 bytes of UTF-8, two per character
    photo, sidecar = output_paths(tmp_path, stem)
    assert photo.name == "é" * 120 + ".instafly.jpg"  # 240 bytes + 14 fits; 242 + 14 would not
    write_sidecar(sidecar, REJECTED)
    assert sidecar.exists()


def test_a_name_that_fits_is_kept_whole(tmp_path: Path) -> None:
    assert output_paths(tmp_path, "beach")[0] == tmp_path / "beach.instafly.jpg"
    assert output_paths(tmp_path, "b" * 241)[1].name == "b" * 241 + ".instafly.json"


DONE = Sidecar(
    "done",
    "/drop/beach.jpg",
    enhancement=Enhancement(
        output="/out/beach.instafly.jpg",
        score_before=-4.5,
        score_after=-4.25,
        params={"exposure": 0.125, "contrast": -0.5},
        seconds=3.5,
        mode="edits",
        model_version=2,
        steps=12,
        width=640,
        height=480,
        instafly_version="0.1.0",
    ),
)


def test_a_done_sidecar_is_flat_json_and_reads_back_as_the_same_record(tmp_path: Path) -> None:
    path = tmp_path / "beach.instafly.json"
    write_sidecar(path, DONE)
    written = json.loads(path.read_text())
    assert list(written) == [
        "status", "input", "output", "score_before", "score_after", "params", "seconds",
        "mode", "model_version", "steps", "width", "height", "instafly_version",
    ]  # fmt: skip
    assert written["params"] == {"exposure": 0.125, "contrast": -0.5}
    assert read_sidecar(path) == DONE


def test_a_job_without_result_has_only_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "x.instafly.json"
    write_sidecar(path, Sidecar("failed", "/drop/x.jpg", reason="gave up after 3 attempts"))
    assert json.loads(path.read_text()) == {
        "status": "failed",
        "input": "/drop/x.jpg",
        "reason": "gave up after 3 attempts",
    }
    assert read_sidecar(path) == Sidecar("failed", "/drop/x.jpg", reason="gave up after 3 attempts")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"status": "maybe", "input": "x.jpg"}', "no status and input"),
        (b'{"status": "done"}', "no status and input"),
        (b'{"status": "duplicate", "input": "x.jpg", "job": 1}', "without the photo it matches"),
        (b" " * (MAX_SIDECAR_BYTES + 1), "larger than"),
    ],
)
def test_a_file_that_is_not_our_sidecar_is_refused_saying_why(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "odd.instafly.json"
    path.write_bytes(content)
    with pytest.raises(UnreadableSidecar, match=message):
        read_sidecar(path)


def test_odd_values_in_a_done_sidecar_are_left_out_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "odd.instafly.json"
    record = DONE.as_json() | {"params": {"exposure": "1e999", "contrast": 0.5, "x": None}}
    path.write_text(json.dumps(record))
    read = read_sidecar(path)
    assert read.enhancement is not None and read.enhancement.params == {"contrast": 0.5}
    path.write_text(json.dumps(DONE.as_json() | {"score_after": "high"}))
    assert read_sidecar(path) == Sidecar("done", "/drop/beach.jpg")  # no enhancement to show


def test_a_duplicates_note_is_a_sidecar_and_reads_back_as_the_same_record(tmp_path: Path) -> None:
    path = tmp_path / "copy.instafly.json"
    queued = Sidecar("duplicate", "copy.jpg", duplicate=Duplicate("a.jpg", 7, "queued", "soon"))
    write_sidecar(path, queued)
    assert json.loads(path.read_text()) == {
        "status": "duplicate", "input": "copy.jpg", "same_as": "a.jpg", "job": 7,
        "state": "queued", "note": "soon",
    }  # fmt: skip
    assert read_sidecar(path) == queued
    copied = Duplicate("a.jpg", 7, "done", "copied", "copy.instafly.jpg", -3.0, -2.5)
    write_sidecar(path, Sidecar("duplicate", "copy.jpg", duplicate=copied))
    assert read_sidecar(path).duplicate == copied
    path.write_text(json.dumps(json.loads(path.read_text()) | {"score_after": "high"}))
    assert read_sidecar(path).duplicate == Duplicate(
        "a.jpg", 7, "done", "copied", "copy.instafly.jpg", -3.0, None
    )  # an odd score is left out, not believed
