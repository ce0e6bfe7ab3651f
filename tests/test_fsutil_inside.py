"""The one check before a file a row or a URL names is shown or served: inside the folders."""

from __future__ import annotations

from pathlib import Path

from instaflyd.fsutil import file_inside


def test_only_an_existing_file_inside_a_root_passes(tmp_path: Path) -> None:
    root, other = tmp_path / "drop", tmp_path / "secret"
    root.mkdir()
    other.mkdir()
    (root / "a.jpg").write_bytes(b"a")
    (other / "key").write_bytes(b"k")
    (root / "link.jpg").symlink_to(other / "key")
    assert file_inside(root / "a.jpg", [root]) == (root / "a.jpg").resolve()
    assert file_inside(str(root / ".." / "drop" / "a.jpg"), [root]) == (root / "a.jpg").resolve()
    assert file_inside(root / ".." / "secret" / "key", [root]) is None  # climbs out
    assert file_inside(root / "link.jpg", [root]) is None  # a symlink pointing out
    assert file_inside(root / "gone.jpg", [root]) is None
    assert file_inside(root, [root]) is None  # a folder is not a file
    assert file_inside(None, [root]) is None and file_inside("", [root]) is None
    assert file_inside(other / "key", [root, other]) == (other / "key").resolve()
