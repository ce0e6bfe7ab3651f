"""Whether the weights `model.weights` asks for are there and genuine, in one sentence for people.

Read every few seconds by the supervisor's status snapshot, the training policy and `stats`;
the md5 of the ImageNet file is computed once per file (see `file.imagenet_file_is_genuine`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from instaflyd.config import Config
from instaflyd.weights import file
from instaflyd.weights.progress import DownloadProgress, read_progress


@dataclass(frozen=True)
class WeightsStatus:
    setting: str  # model.weights: imagenet | none | a path
    path: str | None  # the file that setting reads, if any
    present: bool
    ok: bool  # usable for training: present and verified, or random init asked for
    message: str  # one sentence for people, including how to fix it
    download: DownloadProgress | None = None  # a download running or failed (imagenet only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def imagenet_status(config: Config) -> WeightsStatus:
    """Whether the ImageNet notop file is in data_dir/weights/ and genuine, whatever the setting."""
    path = file.imagenet_weights_path(config)
    if not path.is_file():
        download = read_progress(config)
        return WeightsStatus(
            "imagenet", str(path), False, False, _missing_message(path, download), download
        )
    if not file.imagenet_file_is_genuine(path):
        return WeightsStatus(
            "imagenet", str(path), True, False,
            f"{path} is not the published ImageNet VGG16 notop file (size or md5 differ); "
            "fetch or import it again",
        )  # fmt: skip
    return WeightsStatus("imagenet", str(path), True, True, "ImageNet VGG16 weights present")


def weights_status(config: Config) -> WeightsStatus:
    setting = config.model.weights
    if setting == "none":
        return WeightsStatus(
            setting, None, False, True,
            "random initial weights (model.weights: none): for tests and demos only; "
            "predictions mean little",
        )  # fmt: skip
    if setting == "imagenet":
        return imagenet_status(config)
    path = Path(setting)
    if not path.is_file():
        return WeightsStatus(
            setting, str(path), False, False,
            f"the weights file {path} set in model.weights does not exist",
        )  # fmt: skip
    return WeightsStatus(setting, str(path), True, True, f"weights from {path}")


def _missing_message(path: Path, download: DownloadProgress | None) -> str:
    how = (
        f"upload {file.WEIGHTS_FILE} on the status page, or run 'instaflyd weights import FILE' "
        "with a copy of it"
    )
    if download is None:
        return (
            f"the ImageNet VGG16 weights are missing ({path}); run 'instaflyd weights fetch' "
            f"where the box has internet, or {how}"
        )
    done = f"{download.bytes / 1e6:.1f} of {download.total / 1e6:.1f} MB"
    if download.state == "downloading":
        return f"downloading the ImageNet VGG16 weights: {done}"
    if download.offline:
        return (
            f"this box cannot reach the internet to download the ImageNet VGG16 weights "
            f"({done} so far; it tries again by itself): {how}"
        )
    return f"the download of the ImageNet VGG16 weights failed: {download.error}; {how}"
