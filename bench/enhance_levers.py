"""Benchmark: the levers on a photo's enhancement that change its result, against the old
search, on varied photos in one process run: CPU seconds and the score gain each keeps.

The model: the product's scorer at 320 px (VGG16 through block5_conv2, block5_conv3 and the
head; `--model random`: random weights, as `bench/photo_latency.py`; `--model trained`
(default): the same random frozen part with its tail trained briefly, 3 epochs on 64 generated
photos, to a target that likes bright, colourful, contrasty photos; the ImageNet file cannot be
downloaded here).

The photos: 9 generated ones, from a 12 MP landscape down to a 1080x1350 portrait, dark, washed
out, warm, colourless, a night scene with black in it, a busy texture, a bright one (listed as
they are made, with their sizes).

Each setting is `enhance_file` with the `enhance` section changed (the product's code path,
the edits found applied once at full size, the JPEG written and scored), timed per photo in
CPU seconds of this process and wall seconds; the settings take turns photo by photo so that
the machine's load falls on all alike. Every gradient step and full-size edit is compiled
before the timing (a warm enhancer). The gain of a photo is the model's score of the written
file at 320 px minus the original's (the same 320 px scores the page shows); both sides'
gains come from the same scorer.

Printed: a line per photo and setting, then per setting the mean CPU s, wall s and steps, the
mean gain and its ratio to the old search's, the worst photo's ratio, the smallest gain (below
0: a photo made worse), and the cheapest setting that keeps 90% of the mean gain with no photo
made worse. Also the largest difference between the score before that the search's first step
computed and a separate forward pass (the before-score reuse at 320 px).

    .venv/bin/python bench/enhance_levers.py [--model trained|random] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from enhance import landscape  # noqa: E402

from instaflyd.config import Config, build_config  # noqa: E402
from instaflyd.enhance import pipeline  # noqa: E402
from instaflyd.enhance.io import encode_jpeg, open_image  # noqa: E402
from instaflyd.model.backbone import build_backbone, build_scorer_model, build_tail  # noqa: E402
from instaflyd.model.registry import KerasScorer  # noqa: E402

SIZE = 320
OLD = {"search_size": None, "patience": 4, "min_gain": 0.05, "learning_rate": 0.1, "steps": 50}


@dataclass(frozen=True)
class Setting:
    name: str
    enhance: dict[str, Any]  # overrides of OLD


SETTINGS = (
    Setting("old: search at 320, patience 4", {}),
    Setting("320, patience 2", {"patience": 2}),
    Setting("224, patience 2", {"search_size": 224, "patience": 2}),
    Setting("160, patience 4", {"search_size": 160}),
    Setting("160, patience 2", {"search_size": 160, "patience": 2}),
    Setting("160, patience 1 (gain/step < 5%)", {"search_size": 160, "patience": 1}),
    Setting("160, patience 2, rate 0.2", {"search_size": 160, "patience": 2, "learning_rate": 0.2}),
    Setting("128, patience 2", {"search_size": 128, "patience": 2}),
)


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def photos(folder: Path, quick: bool) -> list[Path]:
    """The varied photos, written as JPEG (quality 92)."""

    def scene(width: int, height: int, seed: int) -> np.ndarray:
        return landscape(width, height, seed=seed).astype(np.float32)

    rng = np.random.default_rng(7)
    made: dict[str, np.ndarray] = {}
    made["landscape 12 MP"] = scene(4000, 3000, 1)
    made["dark"] = scene(2000, 1500, 2) * 0.4
    washed = scene(1500, 2000, 3)
    made["washed out, portrait"] = 110 + 0.45 * washed
    warm = scene(2400, 1800, 4)
    made["warm cast"] = warm * np.array([1.18, 1.0, 0.75], np.float32)
    grey = scene(2048, 1536, 5)
    luma = grey @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    made["nearly colourless"] = luma[..., None] + 0.15 * (grey - luma[..., None])
    night = np.zeros((1500, 2000, 3), np.float32)  # black sky, a few lit windows and lamps
    for _ in range(60):
        y, x = rng.integers(300, 1450), rng.integers(0, 1960)
        night[y : y + rng.integers(8, 40), x : x + rng.integers(8, 40)] = rng.uniform(120, 255, 3)
    made["night, black"] = night
    yy, xx = np.mgrid[0:1350, 0:1080].astype(np.float32)
    busy = np.stack(
        [
            128 + 100 * np.sin(xx / 7) * np.cos(yy / 11),
            128 + 90 * np.sin((xx + yy) / 5),
            128 + 80 * np.cos(xx / 13 - yy / 3),
        ],
        axis=-1,
    )
    made["busy texture, 1080x1350"] = busy + rng.normal(0, 12, busy.shape)
    made["bright"] = scene(3000, 2000, 6) * 1.35 + 20
    made["square 1600"] = scene(1600, 1600, 8)
    names = list(made)[:4] if quick else list(made)
    paths = []
    for n, name in enumerate(names):
        pixels = np.clip(made[name], 0, 255).astype(np.uint8)
        path = folder / f"{n:02d}-{name.split(',')[0].replace(' ', '-')}.jpg"
        path.write_bytes(encode_jpeg(pixels, quality=92, exif=None, icc_profile=None))
        paths.append(path)
        print(f"photo {path.name}: {name}, {pixels.shape[1]}x{pixels.shape[0]}", flush=True)
    return paths


def attractiveness(pixels: np.ndarray) -> float:
    """The brief training's target: bright, colourful and contrasty scores higher."""
    x = pixels / 255.0
    grey = x.mean(axis=-1, keepdims=True)
    return float(x.mean() + 2 * np.abs(x - grey).mean() + x.std())


def scorer_for(config: Config, model: str, folder: Path) -> KerasScorer:
    backbone = build_backbone(config, "none", SIZE, seed=0)
    tail = build_tail(seed=0, conv_weights=backbone.tail_conv_weights)
    if model == "trained":
        rng = np.random.default_rng(11)
        images, targets = [], []
        for n in range(64):  # landscapes edited at random: darker, paler, warmer, flatter ...
            base = landscape(400, 300, seed=100 + n).astype(np.float32)
            gain, flat, cast = rng.uniform(0.4, 1.3), rng.uniform(0.3, 1.0), rng.uniform(0.8, 1.2)
            luma = base.mean(axis=-1, keepdims=True)
            edited = 128 + flat * (gain * base - 128)
            edited = luma * gain + rng.uniform(0.1, 1.4) * (edited - luma * gain)
            edited = np.clip(edited * np.array([cast, 1.0, 2 - cast], np.float32), 0, 255)
            small = pipeline.model_copy(edited.astype(np.uint8), SIZE)
            images.append(backbone.forward(small)[0].numpy())
            targets.append(attractiveness(small[0].numpy()))
        features, y = np.stack(images), np.array(targets, np.float32)
        y = (y - y.mean()) / y.std()
        tail.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        history = tail.fit(features, y, epochs=3, batch_size=8, verbose=0)
        print(f"tail trained: loss {history.history['loss'][0]:.3f} -> "
              f"{history.history['loss'][-1]:.3f}", flush=True)  # fmt: skip
    return KerasScorer(None, SIZE, build_scorer_model(backbone, tail))


def config_for(base: dict[str, Any], data_dir: Path, enhance: dict[str, Any]) -> Config:
    values = {**base, "enhance": {**OLD, **enhance}}
    return build_config(values, data_dir=data_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("trained", "random"), default="trained")
    parser.add_argument("--quick", action="store_true", help="4 photos, for a trial run")
    parser.add_argument(
        "--settings", help="only these settings (their numbers in SETTINGS, e.g. 0,2,4); 0 is kept"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="instafly-enhance-levers-"))
    base = {"model": {"input_size": SIZE, "weights": "none"}}
    load_start = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load {load_start:.1f}; model at {SIZE} px, {args.model} "
          f"weights; files in {work}", flush=True)  # fmt: skip
    global SETTINGS
    if args.settings:
        chosen = {0, *(int(n) for n in args.settings.split(","))}
        SETTINGS = tuple(s for n, s in enumerate(SETTINGS) if n in chosen)
    scorer = scorer_for(config_for(base, work, {}), args.model, work)
    paths = photos(work, args.quick)

    # Compile everything first: each search size's gradient step, each photo size's strips.
    for size in sorted({s.enhance.get("search_size") or SIZE for s in SETTINGS}):
        pipeline.warm_up(scorer, "edits", size)
    for path in paths:
        pipeline.enhance_file(path, work / "warm", scorer, config_for(base, work, {"steps": 1}))

    before: dict[Path, float] = {}
    reuse_difference = 0.0
    rows: dict[tuple[str, Path], dict[str, float]] = {}
    for path in paths:
        loaded = open_image(path, max_pixels=10**8, max_file_mb=200)
        before[path] = pipeline.score_pixels(scorer, pipeline.model_copy(loaded.pixels, SIZE))
        for setting in SETTINGS:
            config = config_for(base, work, setting.enhance)
            out = work / "out" / setting.name.replace(" ", "_").replace(":", "").replace(",", "")
            began_cpu, began = cpu_seconds(), time.monotonic()
            result = pipeline.enhance_file(path, out, scorer, config)
            cpu, wall = cpu_seconds() - began_cpu, time.monotonic() - began
            if config.enhance.search_size is None:
                reuse_difference = max(reuse_difference, abs(result.score_before - before[path]))
            gain = result.score_after - before[path]
            rows[setting.name, path] = {"cpu": cpu, "wall": wall, "gain": gain,
                                        "steps": result.steps}  # fmt: skip
            print(f"{path.name:28} {setting.name:36} {cpu:6.2f} CPU s {wall:6.2f} s "
                  f"{result.steps:3d} steps  gain {gain:+.4f}", flush=True)  # fmt: skip

    old = SETTINGS[0].name
    old_gain = statistics.mean(rows[old, p]["gain"] for p in paths)
    load_end = os.getloadavg()[0]
    print(f"\n{len(paths)} photos; model at {SIZE} px, {args.model} weights; {os.cpu_count()} "
          f"cores, load {load_start:.1f} at the start, {load_end:.1f} at the end")  # fmt: skip
    print(f"{'setting':38}{'CPU s':>7}{'/old':>6}{'wall s':>8}{'steps':>7}{'gain':>9}"
          f"{'/old':>6}{'worst':>7}{'min gain':>10}")  # fmt: skip
    summary = []
    old_cpu = statistics.mean(rows[old, p]["cpu"] for p in paths)
    for setting in SETTINGS:
        mine = [rows[setting.name, p] for p in paths]
        cpu = statistics.mean(r["cpu"] for r in mine)
        gain = statistics.mean(r["gain"] for r in mine)
        worst = min(r["gain"] / rows[old, p]["gain"] for r, p in zip(mine, paths, strict=True))
        least = min(r["gain"] for r in mine)
        summary.append((setting.name, cpu, gain / old_gain, least))
        print(f"{setting.name:38}{cpu:7.2f}{cpu / old_cpu:6.2f}"
              f"{statistics.mean(r['wall'] for r in mine):8.2f}"
              f"{statistics.mean(r['steps'] for r in mine):7.1f}{gain:+9.4f}{gain / old_gain:6.2f}"
              f"{worst:7.2f}{least:+10.4f}")  # fmt: skip
    keeping = [s for s in summary if s[2] >= 0.9 and s[3] >= 0.0]
    if keeping:
        name, cpu, ratio, _ = min(keeping, key=lambda s: s[1])
        print(f"cheapest setting keeping >= 90% of the mean gain, no photo worse: {name} "
              f"({cpu:.2f} CPU s, {ratio:.2f} of the gain)")  # fmt: skip
    print(f"score before: the search's first step against a separate pass at 320 px, largest "
          f"difference {reuse_difference:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
