"""Benchmark: a 12-megapixel photo sent from the page, from the upload's beginning to its
enhanced copy, cold and warm, old code against new in one run; and each speed lever apart.

1. **Levers**, in this process with the new code, on one generated 12 MP landscape and the
   product's scorer at 320 px (VGG16, block5_conv3 and the head, random weights: the ImageNet
   file cannot be downloaded here; its values cost the same time):
   - the edit search's gradient step compiled by XLA (`jit_compile=True`) against the
     `tf.function` the search uses: CPU seconds of 4 steps once compiled, the compilation's
     own cost, and how far the found edits moved;
   - the full-size edit, per strip, op by op (`filters.edit_strip` in a `tf.function`, as
     before) against one XLA-compiled function (`filters.apply_full` now): CPU seconds and the
     largest pixel difference;
   - the parts of one enhancement (decode, search at the model's input size, the edits applied
     once at full size, encode, score): where the time goes.
2. **Side by side**: for each side (old: `git archive` of `--old-ref`, default 6cdcd8d, main
   before the search's size and stop rule became settings (d1c5165 was main before the XLA
   edit and the warm-up); new: this checkout, with the default `enhance` settings) a data dir
   with the same promoted 320 px model and a real `instaflyd worker` (which starts the
   enhancer), then:
   - *cold, from the page*: no enhancer running; the page says an upload begins (touches
     `enhancer.wanted`, as `POST /api/photos/coming` does) and the photo arrives
     `--upload-seconds` later, queued the way the page queues it (`web.uploads.receive_upload`);
     timed from the upload's beginning to the job done;
   - *warm*: a second photo right after, the enhancer still loaded; timed from its upload;
   - *cold, dropped*: the worker started again (no enhancer, no announcement), a third photo
     queued; timed from its upload.
   Printed for each: seconds to done, the enhancer's CPU seconds until then, the score gain of
   the written photo, and new / old; the enhancer's peak memory per side.

Times are wall-clock on a shared machine; the CPU seconds are the load-independent figure.

    .venv/bin/python bench/photo_latency.py [--upload-seconds 2] [--old-ref 6cdcd8d] [--skip-levers]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from enhance import landscape  # noqa: E402
from idle import old_source  # noqa: E402

from instaflyd.config import Config, build_config  # noqa: E402
from instaflyd.enhance import filters, pipeline  # noqa: E402
from instaflyd.enhance.edits import EditSearch  # noqa: E402
from instaflyd.enhance.io import encode_jpeg, open_image  # noqa: E402
from instaflyd.imaging import open_image as open_file  # noqa: E402
from instaflyd.model import registry  # noqa: E402
from instaflyd.model.backbone import BACKBONE, build_backbone, build_tail  # noqa: E402
from instaflyd.model.manifest import VersionManifest  # noqa: E402
from instaflyd.processes import process_tree  # noqa: E402
from instaflyd.store import Database  # noqa: E402
from instaflyd.store.versions import add_model_version  # noqa: E402
from instaflyd.web.uploads import receive_upload  # noqa: E402

SIZE = 320
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def make_model(config: Config) -> registry.KerasScorer:
    """A promoted v1 at 320 px with random weights in `config`'s data dir; returns its scorer."""
    backbone = build_backbone(config, "none", SIZE)
    tail = build_tail(config.train.seed, backbone.tail_conv_weights)
    manifest = VersionManifest(
        version=1, backbone=BACKBONE, input_size=SIZE, weights="none",
        fingerprint=backbone.fingerprint, seed=config.train.seed, objective="regression",
        keras=keras.__version__, created=time.time(),
    )  # fmt: skip
    folder = registry.write_version(config, 1, tail, manifest, {"val_srcc": None})
    with Database(config.db_path) as db, db.transaction() as conn:
        add_model_version(
            conn, 1, str(folder.relative_to(config.data_dir)), 0, 0, {}, promoted=True
        )
    return registry.load_version(config, 1)


def levers(photo: Path, scorer: registry.KerasScorer) -> None:
    """Each lever on its own, in this process."""
    print("\n== levers (this process, new code) ==", flush=True)
    loaded = open_image(photo, max_pixels=10**8, max_file_mb=200)
    small = pipeline.model_copy(loaded.pixels, SIZE)

    # the gradient step: tf.function as used, against XLA
    found = {}
    for name, jit in (("tf.function", False), ("XLA (jit_compile)", True)):
        search = EditSearch(scorer)
        search._step = tf.function(search.gradient_ascent_step, jit_compile=jit)
        began = cpu_seconds()
        search.run(small, 1)  # compiles
        compile_cpu = cpu_seconds() - began
        began = cpu_seconds()
        found[name] = search.run(small, 4)
        run_cpu = cpu_seconds() - began
        print(f"edit step, {name:18}: 4 steps {run_cpu:6.2f} CPU s ({run_cpu / 4:.2f} a step); "
              f"first step with compiling {compile_cpu:6.2f} CPU s", flush=True)  # fmt: skip
    moved = np.abs(found["tf.function"].raw - found["XLA (jit_compile)"].raw).max()
    print(f"  found edits differ by at most {moved:.5f} (raw units)")

    # the full-size edit: op by op against one compiled function
    raw = found["tf.function"].raw
    per_op = tf.function(filters.edit_strip, reduce_retracing=True)
    outputs = {}
    for name, strip in (("op by op", per_op), ("XLA", filters._edit_strip)):
        saved, filters._edit_strip = filters._edit_strip, strip
        try:
            filters.apply_full(loaded.pixels, raw)  # compiles
            began = cpu_seconds()
            outputs[name] = filters.apply_full(loaded.pixels, raw)
            print(f"full-size edit, {name:9}: {cpu_seconds() - began:6.2f} CPU s", flush=True)
        finally:
            filters._edit_strip = saved
    difference = np.abs(outputs["op by op"].astype(int) - outputs["XLA"].astype(int))
    print(f"  pixels differ by at most {difference.max()} (mean {difference.mean():.6f})")

    # where one enhancement's time goes (new code, compiled)
    parts: dict[str, float] = {}

    def timed(name: str, work):  # type: ignore[no-untyped-def]
        began = cpu_seconds()
        value = work()
        parts[name] = cpu_seconds() - began
        return value

    pixels = timed("decode", lambda: open_image(photo, max_pixels=10**8, max_file_mb=200).pixels)
    copy = timed("copy at 320", lambda: pipeline.model_copy(pixels, SIZE))
    result = timed("search at 320", lambda: pipeline.compiled_for(EditSearch, scorer).run(copy, 50))
    edited = timed("edits at full size", lambda: filters.apply_full(pixels, result.raw))
    jpeg = timed("encode", lambda: encode_jpeg(edited, quality=92, exif=None, icc_profile=None))

    def score() -> None:
        with open_file(jpeg, 10**8) as written:
            pipeline.score_pixels(scorer, pipeline.model_copy(written.convert("RGB"), SIZE))
        pipeline.score_pixels(scorer, copy)

    timed("score before and after", score)
    total = sum(parts.values())
    print(f"one enhancement, {result.steps} search steps: {total:.1f} CPU s = " + ", ".join(
        f"{name} {seconds:.1f} ({seconds / total:.0%})" for name, seconds in parts.items()
    ), flush=True)  # fmt: skip


def enhancer_pid(worker: int) -> int | None:
    for pid in process_tree(worker):
        try:
            if b"--enhancer" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
        except OSError:
            continue
    return None


def process_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def job_state(db: Path, job_id: int) -> str | None:
    try:
        conn = sqlite3.connect(db, timeout=30)
        try:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


class Side:
    """One side's data dir and its running worker."""

    def __init__(self, name: str, source: Path, work: Path, template: Path) -> None:
        self.name = name
        self.source = source
        self.data_dir = shutil.copytree(template, work / name / "data")
        values = yaml.safe_load((template.parent / "instafly.yaml").read_text())
        values["data_dir"] = str(self.data_dir)
        self.config_file = work / name / "instafly.yaml"
        self.config_file.write_text(yaml.safe_dump(values))
        self.config = build_config(values, data_dir=self.data_dir)
        self.log = (work / name / "worker.log").open("ab")
        self.worker: subprocess.Popen[bytes] | None = None
        self.enhancer_peak = 0.0

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.source), "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("INSTAFLY_CONFIG", None)
        self.config.enhancer_wanted_path.unlink(missing_ok=True)  # no announcement left over
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "instaflyd", "--config", str(self.config_file), "worker"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(self.source),
        )  # fmt: skip
        time.sleep(3)  # its loop is up (no TensorFlow in it)

    def stop(self) -> None:
        if self.worker is not None:
            self.enhancer_peak = max(self.enhancer_peak, peak_rss_mb(enhancer_pid(self.worker.pid)))
            self.worker.send_signal(signal.SIGTERM)
            self.worker.wait(60)
            self.worker = None

    def send(self, photo: Path, announce_seconds: float | None) -> dict[str, float]:
        """Upload `photo` as the page does; returns seconds to done, CPU, gain."""
        assert self.worker is not None
        began = time.monotonic()
        enhancer_before = enhancer_pid(self.worker.pid)
        cpu_before = process_cpu(enhancer_before)
        if announce_seconds is not None:
            self.config.enhancer_wanted_path.touch()
            os.utime(self.config.enhancer_wanted_path)
            time.sleep(announce_seconds)  # the photo is on its way
        with Database(self.config.db_path) as db, photo.open("rb") as stream:
            upload = receive_upload(self.config, db, stream, photo.name)
        while (state := job_state(self.config.db_path, upload.id)) not in (
            "done", "failed", "rejected"
        ):  # fmt: skip
            self.enhancer_peak = max(self.enhancer_peak, peak_rss_mb(enhancer_pid(self.worker.pid)))
            time.sleep(0.05)
        seconds = time.monotonic() - began
        pid = enhancer_pid(self.worker.pid)
        cpu_now = process_cpu(pid)
        cpu = cpu_now - (cpu_before if pid == enhancer_before else 0.0)
        sidecar = next((self.config.watch.output_dir).glob(f"{photo.stem}*.instafly.json"))
        record = json.loads(sidecar.read_text())
        gain = record.get("score_after", np.nan) - record.get("score_before", np.nan)
        return {
            "seconds": seconds, "cpu": cpu, "gain": gain, "steps": record.get("steps", 0),
            "ok": state == "done",
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upload-seconds", type=float, default=2.0)
    parser.add_argument("--old-ref", default="6cdcd8d")
    parser.add_argument("--skip-levers", action="store_true")
    parser.add_argument("--megapixels", type=float, default=12.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="instafly-photo-latency-"))
    old = old_source(args.old_ref, work / "old-src")

    width = round((args.megapixels * 1e6 * 4 / 3) ** 0.5)
    photos = []
    for n in (1, 2, 3):
        path = work / f"photo{n}.jpg"
        pixels = landscape(width, width * 3 // 4, seed=n)
        path.write_bytes(encode_jpeg(pixels, quality=92, exif=None, icc_profile=None))
        photos.append(path)
    template = work / "template" / "data"
    values = {
        "data_dir": str(template),
        "model": {"input_size": SIZE, "weights": "none"},
        "watch": {"drop_dir": "drop", "output_dir": "enhanced", "settle_seconds": 0.5,
                  "idle_unload_seconds": 600},
    }  # fmt: skip
    template.mkdir(parents=True)
    (template / "drop").mkdir()
    (template.parent / "instafly.yaml").write_text(yaml.safe_dump(values))
    scorer = make_model(build_config(values, data_dir=template))
    load = os.getloadavg()[0]
    print(f"3 photos {width}x{width * 3 // 4} ({photos[0].stat().st_size:,} bytes, about); 320 px, "
          f"random weights; {os.cpu_count()} cores, load {load:.1f}; files in {work}")  # fmt: skip
    if not args.skip_levers:
        levers(photos[0], scorer)
    del scorer
    pipeline.forget_compiled()

    print("\n== side by side: real worker and enhancer processes ==", flush=True)
    results: dict[tuple[str, str], dict[str, float]] = {}
    peaks = {}
    for name, source in (("old", old), ("new", REPO)):
        side = Side(name, source, work, template)
        try:
            side.start()
            for case, photo, announce in (
                ("cold, from the page", photos[0], args.upload_seconds),
                ("warm", photos[1], None),
            ):
                results[name, case] = side.send(photo, announce)
                print(f"{name} {case}: {results[name, case]}", flush=True)
            side.stop()
            side.start()
            results[name, "cold, dropped"] = side.send(photos[2], None)
            print(f"{name} cold, dropped: {results[name, 'cold, dropped']}", flush=True)
        finally:
            side.stop()
        peaks[name] = side.enhancer_peak

    print(
        f"\n{args.megapixels:g} MP photo at {SIZE} px, upload to done; {os.cpu_count()} cores, "
        f"load at the end {os.getloadavg()[0]:.1f}; upload {args.upload_seconds:g} s after its "
        "announcement"
    )
    print(f"{'case':22}{'old s':>8}{'new s':>8}{'new/old':>9}{'old CPU s':>11}{'new CPU s':>11}"
          f"{'old gain':>10}{'new gain':>10}")  # fmt: skip
    for case in ("cold, from the page", "warm", "cold, dropped"):
        o, n = results["old", case], results["new", case]
        print(f"{case:22}{o['seconds']:8.1f}{n['seconds']:8.1f}{n['seconds'] / o['seconds']:9.2f}"
              f"{o['cpu']:11.1f}{n['cpu']:11.1f}{o['gain']:+10.4f}{n['gain']:+10.4f}")  # fmt: skip
    print(f"enhancer peak memory: old {peaks['old']:.0f} MB, new {peaks['new']:.0f} MB")


if __name__ == "__main__":
    main()
