"""Is there room to save things? The disk-space and read-only checks of the repairs list.

One `statvfs` per folder the box writes to (the data folder, and the output folder when it is on
another disk): cheap enough for every few seconds. Below the configured floor
(`faults.disk_floor_mb` / `faults.disk_floor_percent`, whichever is smaller) the repairs list
warns; below a fifth of it, it is an error because saving will soon fail. A read-only mount
(an SD card the kernel remounted after errors) is an error at once. Each problem disappears
as soon as the check no longer sees it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from instaflyd.config import Config
from instaflyd.repairs import RepairsRegistry

LOW = "disk.low"
READ_ONLY = "disk.read_only"
ERROR_SHARE = 5  # below floor / 5 the warning becomes an error


@dataclass(frozen=True)
class DiskSpace:
    path: str  # the folder checked
    free_bytes: int  # available to an unprivileged process
    total_bytes: int
    read_only: bool
    device: int


def disk_space(path: Path) -> DiskSpace | None:
    """The space of the file system `path` is on (its nearest existing parent's); None if none."""
    for candidate in (path, *path.parents):
        try:
            stats = os.statvfs(candidate)
            device = candidate.stat().st_dev
        except OSError:
            continue
        return DiskSpace(
            str(path),
            stats.f_bavail * stats.f_frsize,
            stats.f_blocks * stats.f_frsize,
            bool(stats.f_flag & os.ST_RDONLY),
            device,
        )
    return None


def check_storage(config: Config, registry: RepairsRegistry) -> list[DiskSpace]:
    """Report (or resolve) disk.low and disk.read_only for the folders the box writes to."""
    seen: dict[int, DiskSpace] = {}
    for folder in (config.data_dir, config.watch.output_dir):
        space = disk_space(folder)
        if space is not None and space.device not in seen:
            seen[space.device] = space
    spaces = list(seen.values())
    read_only = [s for s in spaces if s.read_only]
    if read_only:
        registry.report(
            READ_ONLY,
            "error",
            f"The storage that holds {_names(read_only, config)} has become read-only: new posts"
            " and photos cannot be saved.",
            "This usually means the SD card or disk has a fault and the system protected it. "
            "Restart the box; if it happens again, replace the card. The box saves again by "
            "itself once the storage is writable.",
            title="Storage is read-only",
        )
    else:
        registry.resolve(READ_ONLY)
    low = [
        s
        for s in spaces
        if not s.read_only and s.free_bytes < config.faults.disk_floor_bytes(s.total_bytes)
    ]
    if low:
        worst = min(low, key=lambda s: s.free_bytes)
        full = worst.free_bytes < config.faults.disk_floor_bytes(worst.total_bytes) / ERROR_SHARE
        registry.report(
            LOW,
            "error" if full else "warning",
            f"The storage that holds {_names(low, config)} is "
            f"{'full' if full else 'almost full'}: {human_bytes(worst.free_bytes)} free of "
            f"{human_bytes(worst.total_bytes)}."
            + (" New posts and photos may not be saved." if full else ""),
            "Delete enhanced photos you no longer need from the output folder, or empty the drop "
            "folder; the box carries on by itself once there is room.",
            title="Storage is full" if full else "Storage is almost full",
        )
    else:
        registry.resolve(LOW)
    return spaces


def _names(spaces: list[DiskSpace], config: Config) -> str:
    paths = {s.path for s in spaces}
    names = []
    if str(config.data_dir) in paths:
        names.append("the captured posts")
    if str(config.watch.output_dir) in paths:
        names.append("the enhanced photos")
    return " and ".join(names) or "the box's data"


def human_bytes(count: float) -> str:
    """1234567 -> '1.2 MB' (powers of 1000, as disks are sold)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit in ("bytes", "kB") else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
