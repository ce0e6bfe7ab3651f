"""Output names: never overwriting, and always short enough for the file system."""

from __future__ import annotations

from pathlib import Path

from instaflyd.enhance.outputs import NAME_MAX, output_paths, write_sidecar


def test_a_251_byte_name_is_shortened_and_two_such_names_stay_apart(tmp_path: Path) -> None:
    stem = "a" * 247  # "<stem>.jpg" is 251 bytes: "<stem>.instafly.json" would be 261
    photo, sidecar = output_paths(tmp_path, stem)
    assert max(len(photo.name.encode()), len(sidecar.name.encode())) == NAME_MAX
    assert photo.name == "a" * 241 + ".instafly.jpg"
    write_sidecar(sidecar, {"status": "done"})  # the file system takes it
    photo.write_bytes(b"jpeg")

    second, second_sidecar = output_paths(tmp_path, stem + "b")  # the same once shortened
    assert (second.name, second_sidecar.name) == (
        "a" * 239 + "-2.instafly.jpg",
        "a" * 239 + "-2.instafly.json",
    )
    write_sidecar(second_sidecar, {"status": "done"})
    assert output_paths(tmp_path, stem)[0].name == "a" * 239 + "-3.instafly.jpg"


def test_a_long_name_is_cut_between_characters(tmp_path: Path) -> None:
    stem = "é" * 130  # 260 bytes of UTF-8, two per character
    photo, sidecar = output_paths(tmp_path, stem)
    assert photo.name == "é" * 120 + ".instafly.jpg"  # 240 bytes + 14 fits; 242 + 14 would not
    write_sidecar(sidecar, {"status": "done"})
    assert sidecar.exists()


def test_a_name_that_fits_is_kept_whole(tmp_path: Path) -> None:
    assert output_paths(tmp_path, "beach")[0] == tmp_path / "beach.instafly.jpg"
    assert output_paths(tmp_path, "b" * 241)[1].name == "b" * 241 + ".instafly.json"
