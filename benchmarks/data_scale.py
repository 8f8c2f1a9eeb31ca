"""Data at real scale: peak memory and throughput of `orthograd evaluate` and `forget` on generated sets.

Images: N JPEGs (default 20,000; shorter side 256 px, aspect ratios 1:1 to 1:1.5) with random labels,
a torchvision mobilenet_v3_small (random weights, 10 classes) at 224 px with torchvision's evaluation
transform (`data.resize: shorter_side_crop`, resize 256). Decoded up front as float32 these images
would take N·3·224²·4 bytes (12 GB at 20,000).
- `evaluate` over all N: wall time, images/s, peak memory (the main process's peak RSS from /usr/bin/time -v,
  or the process tree's PSS with the decoding workers, sampled with psutil, whichever is larger);
- `forget` with an N/10-image forget manifest (2,000) and a retain manifest of N/10 or N rows (3 steps):
  peak memory, which must not grow with the retain manifest's length.
Speech: the espeak-ng corpus's training utterances repeated (hard links, so each row is its own file)
to about 2 hours of audio, `evaluate` with the demo's CTC model: peak memory and utterances/s.

Run: python benchmarks/data_scale.py [--images 20000] [--hours 2] [--skip-speech] [--side 256] [--forget-only]
The generated data live under ~/.cache/orthograd/scale (about 0.6 GB at 20,000 images). `--side 36
--forget-only --skip-speech` repeats the forget comparison with 32 px crops in minutes instead of an hour:
what grows with the retain manifest's rows, not with the images' size.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from orthograd_cli.jobs.demo import cache_dir

def image_settings(side: int) -> list[str]:
    """Recipe overrides for JPEGs whose shorter side is `side`: torchvision's evaluation transform, crop 7/8."""
    return ["--set", f"data.image_size={side * 7 // 8}", "--set", "data.resize=shorter_side_crop", "--set",
            f"data.resize_size={side}", "--set", "data.mean=[0.485,0.456,0.406]", "--set",
            "data.std=[0.229,0.224,0.225]", "--set", "eval.batch_size=64",
            "--set", "eval.require_better_than_chance=false"]


def generate_images(root: Path, count: int, side: int = 256) -> None:
    import numpy as np
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count + count // 10):  # the set, then a tenth more as the forget set
        path = root / "images" / f"{i // 1000:02d}" / f"{i:05d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            long_side = int(side * rng.uniform(1.0, 1.5))
            size = (long_side, side) if i % 2 else (side, long_side)
            base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # smooth content, so JPEG sizes are realistic
            Image.fromarray(base).resize(size, Image.BILINEAR).save(path, quality=85)
        rows.append((f"i{i:05d}", str(path.relative_to(root)), int(rng.integers(0, 10))))
    write_manifest(root / "all.csv", rows[:count])
    write_manifest(root / "retain_large.csv", rows[:count])
    write_manifest(root / "retain_small.csv", rows[:count // 10])
    write_manifest(root / "forget.csv", rows[count:])


def write_manifest(path: Path, rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "label"])
        writer.writerows(rows)


def image_model(root: Path) -> Path:
    import torch
    import torchvision

    from orthograd_cli.models.checkpoint import save_checkpoint

    path = root / "mobilenet_v3_small.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = torchvision.models.mobilenet_v3_small(num_classes=10)
        save_checkpoint(model.state_dict(), path, {"orthograd.arch": "mobilenet_v3_small",
                                                   "orthograd.num_classes": "10"})
    return path


def tree_pss(process) -> int:
    """Proportional set size of a process and its children (the decoding workers) together: shared pages
    counted once, unlike a sum of RSS."""
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_full_info().pss
        except psutil.Error:  # a worker that just exited
            pass
    return total


def measured(args: list) -> tuple[float, float, dict]:
    """(wall seconds, peak memory GiB, the command's JSON report) of one `orthograd` run. The peak is the
    larger of the main process's peak RSS (/usr/bin/time -v, exact) and the whole process tree's PSS
    sampled every 0.1 s (which sees the DataLoader workers too)."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(["/usr/bin/time", "-v", sys.executable, "-m", "orthograd_cli", *map(str, args),
                                "--json", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = __import__("concurrent.futures").futures.ThreadPoolExecutor(1).submit(process.communicate)
    peak_tree = 0
    try:
        watched = psutil.Process(process.pid)
        while not reader.done():
            peak_tree = max(peak_tree, tree_pss(watched) if watched.is_running() else 0)
            time.sleep(0.1)
    except psutil.NoSuchProcess:  # it ended between two samples: /usr/bin/time's figure stands
        pass
    stdout, stderr = reader.result()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(map(str, args))}\n{stderr[-2000:]}")
    peak_main = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1)) * 1024
    return wall, max(peak_main, peak_tree) / 2**30, json.loads(stdout)


def images(count: int, side: int = 256, forget_only: bool = False) -> None:
    root = cache_dir().parent / "scale" / (f"images{count}" if side == 256 else f"images{count}_{side}px")
    print(f"generating {count:,} JPEGs under {root} …", flush=True)
    generate_images(root, count, side)
    model = image_model(root)
    crop = side * 7 // 8
    settings = image_settings(side)
    if not forget_only:
        decoded_gib = count * 3 * crop * crop * 4 / 2**30
        wall, peak, _ = measured(["evaluate", model, "--test", root / "all.csv", *settings])
        print(f"evaluate, {count:,} images at {crop} px (decoded up front they would take {decoded_gib:.1f} GiB): "
              f"{wall:.0f} s, {count / wall:.0f} images/s, peak memory {peak:.2f} GiB", flush=True)
    for name in ("retain_small", "retain_large"):
        rows = sum(1 for _ in open(root / f"{name}.csv")) - 1
        out = root / f"forget_{name}"
        wall, peak, report = measured(["forget", model, "--forget", root / "forget.csv", "--retain",
                                       root / f"{name}.csv", "--out", out, "--overwrite", *settings,
                                       "--set", "method.max_steps=3", "--set", "method.stop.target_forget_acc=0",
                                       "--set", "method.retain_batch_size=16", "--set",
                                       "method.unlearn_batch_size=16"])
        print(f"forget at {crop} px, {count // 10:,} forget and {rows:,} retain rows, {report['steps']} steps: "
              f"{wall:.0f} s, peak memory {peak:.2f} GiB", flush=True)


def speech(hours: float) -> None:
    from orthograd_cli.data.speech import build_speech_corpus
    from orthograd_cli.jobs.demo_asr import speech_checkpoint

    corpus = build_speech_corpus(cache_dir() / "speech")
    model = speech_checkpoint(corpus)
    with open(corpus / "train.csv") as handle:
        rows = list(csv.DictReader(handle))
    import soundfile as sf

    seconds = sum(sf.info(str(corpus / row["path"])).duration for row in rows)
    copies = max(1, round(hours * 3600 / seconds))
    root = cache_dir().parent / "scale" / f"speech{copies}"
    out_rows = []
    for copy in range(copies):
        for row in rows:
            target = root / f"c{copy}" / row["path"]
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(corpus / row["path"], target)
            out_rows.append({**row, "path": str(target.relative_to(root)), "id": f"c{copy}/{row['id']}"})
    with open(root / "all.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "transcript", "speaker", "id"])
        writer.writeheader()
        writer.writerows(out_rows)
    wall, peak, _ = measured(["evaluate", model, "--test", root / "all.csv", "--set", "eval.batch_size=32"])
    hours_seen = copies * seconds / 3600
    print(f"evaluate, {len(out_rows):,} utterances ({hours_seen:.1f} h of audio, {hours_seen * 3600 * 16000 * 4 / 2**30:.1f} "
          f"GiB as float32 waveforms): {wall:.0f} s, {len(out_rows) / wall:.0f} utterances/s, peak memory {peak:.2f} GiB",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--skip-speech", action="store_true")
    parser.add_argument("--side", type=int, default=256, help="shorter side of the generated JPEGs (crop: 7/8)")
    parser.add_argument("--forget-only", action="store_true", help="skip the evaluate run")
    args = parser.parse_args()
    images(args.images, args.side, args.forget_only)
    if not args.skip_speech:
        speech(args.hours)


if __name__ == "__main__":
    main()
