"""`python -m engine bench batch`: images per minute embedded and on a local Ray cluster with
1 and 2 workers (one model load per worker), the per-image cost split into model load,
encode, retrieve, denoise, decode and write, and what Ray adds per image.

Inputs: the first reference view of `limit` test objects spread over the categories of
data/parts (or any folder of images with --images); every configuration runs the same
rows into its own fresh folder."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.batch.compute import PipelineSet, row_threads
from engine.batch.embedded import EmbeddedExecutor
from engine.batch.log import read_log
from engine.batch.rows import read_rows
from engine.batch.runner import run_batch

STAGES = ("encode", "retrieve", "denoise", "decode")


def test_views(data: Path, limit: int, folder: Path) -> Path:
    """Copy the first view of `limit` test objects, evenly spread over the split, into
    `folder`."""
    names = sorted(p.name for p in (data / "test").iterdir() if p.is_dir())
    picks = np.linspace(0, len(names) - 1, limit).round().astype(int)
    folder.mkdir(parents=True, exist_ok=True)
    for i in picks:
        shutil.copy(data / "test" / names[i] / "view_00.png", folder / f"{names[i]}.png")
    return folder


def model_load_seconds(models: Path, pipeline: str) -> float:
    started = time.perf_counter()
    with row_threads():
        PipelineSet(models, "cpu").get(pipeline)
    return time.perf_counter() - started


def measure(images: Path, out: Path, executor, parts: int) -> dict:
    rows = read_rows(images, parts=parts, seed=0, pipeline="partrag")
    started = time.perf_counter()
    summary = run_batch(rows, out, executor, show_progress=False)
    wall = time.perf_counter() - started
    records = [r for r in read_log(out).values() if r["status"] == "ok"]
    mean = lambda key: float(np.mean([r["seconds"].get(key, 0.0) for r in records]))
    return {"images": summary.ok, "failed": summary.failed, "wall": wall,
            "per_minute": 60.0 * summary.ok / wall,
            "stages": {key: mean(key) for key in (*STAGES, "compute", "write")}}


def print_bench_batch(models: Path, data: Path, images: Path | None, limit: int,
                      parts: int) -> int:
    from engine.batch.ray_executor import RayExecutor

    with tempfile.TemporaryDirectory(prefix="partsmith-bench-batch-") as tmp:
        tmp = Path(tmp)
        if images is None:
            if not (data / "test").is_dir():
                print(f"bench batch: no {data / 'test'}; build the dataset (python -m engine "
                      f"data build --out {data}) or pass --images DIR")
                return 2
            images = test_views(data, limit, tmp / "images")
        load = model_load_seconds(models, "partrag")
        results = {}
        for workers in (1, 2):
            results[f"embedded, {workers} worker(s)"] = measure(
                images, tmp / f"embedded{workers}",
                EmbeddedExecutor(PipelineSet(models, "cpu"), workers), parts)
            started = time.perf_counter()
            executor = RayExecutor("local", models, workers=workers, device="cpu")
            start_up = time.perf_counter() - started
            row = measure(images, tmp / f"ray{workers}", executor, parts)
            row["start_up"] = start_up
            results[f"Ray local, {workers} worker(s)"] = row
    count = next(iter(results.values()))["images"]
    print(f"bench batch: {count} images, {parts} parts each, 12 steps, one 1-thread row per "
          f"worker; model load {load:.2f} s per worker (once)")
    header = ("configuration", "images/min", "wall s", "encode", "retrieve", "denoise",
              "decode", "write (driver)")
    print("| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for name, r in results.items():
        s = r["stages"]
        print(f"| {name} | {r['per_minute']:.2f} | {r['wall']:.1f} | " + " | ".join(
            f"{s[k]:.2f}" for k in (*STAGES, "write")) + " |")
    for workers in (1, 2):
        key = f"Ray local, {workers} worker(s)"
        embedded = results[f"embedded, {workers} worker(s)"]
        extra = results[key]["wall"] - results[key]["start_up"] - embedded["wall"]
        print(f"Ray, {workers} worker(s): start-up {results[key]['start_up']:.1f} s (cluster "
                  f"+ actors), then {extra / count:+.2f} s per image against embedded")
    return 0
