"""Generation figures (PartRAG Tables 4/5 protocol) and the end-to-end benchmark.

Every test object's first reference view goes through the pipeline with the object's own
part count; the assembled parts are compared with the ground truth (CD, F-Score@0.1 on
surface samples of the whole object) and the parts' mutual overlap is measured
(part-overlap IoU). Rows: no retrieval (k = 0, PartCrafter-style), top-k 1/3/5 sampled
from noise as in the paper, top-3 with retrieval-initialised sampling at the given start
σ (strengths; needs the part library), and the retrieval-only baseline: the nearest library
asset itself (or, without a library, the nearest bank asset from the training split).
Geometry is scored on what `generate` ships (cleaned parts); debris (area in pieces below
2 % of their part) is measured on the generated parts BEFORE that clean-up, i.e. what the
model itself makes, next to the ground truth's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from engine.data.dataset import load_asset, read_manifest
from engine.eval.bench import whole_mesh
from engine.eval.vae_eval import object_folders
from engine.geometry.metrics import PAPER_SAMPLES, compare_meshes, part_overlap_iou
from engine.geometry.pieces import mean_debris
from engine.pipelines.bundle import MODEL_INDEX
from engine.pipelines.outputs import as_asset
from engine.retrieval import conditioning

TOP_KS = (0, 1, 3, 5)
INITIALISED_K = 3  # the top-k of the retrieval-initialised rows
RETRIEVAL_ONLY = "retrieval only (nearest asset)"


def row_name(k: int, strength: float = 1.0) -> str:
    if k == 0:
        return "no retrieval (k = 0)"
    return f"PartRAG top-{k}" + ("" if strength == 1.0 else f", retrieval-initialised σ0 = {strength:g}")


def configurations(pipeline, top_ks, strengths) -> list[tuple[int, float]]:
    """(top-k, strength) per generated row: the paper's rows, then the initialised ones."""
    rows = [(k, 1.0) for k in top_ks]
    if pipeline.library is not None:
        rows += [(INITIALISED_K, s) for s in strengths if s < 1.0]
    return rows


@dataclass
class Settings:
    steps: int
    guidance: float
    seed: int = 0
    samples: int = PAPER_SAMPLES


def reference_image(folder: Path) -> np.ndarray:
    return np.asarray(Image.open(folder / "view_00.png").convert("RGBA"))


def geometry(gt, asset, samples: int, debris: float | None = None) -> dict:
    """CD, F, part IoU, and debris: `debris` when given (a generation's, measured before
    its clean-up), else the asset's own."""
    metrics = compare_meshes(whole_mesh(gt), whole_mesh(asset), samples)
    meshes = [(p.object_vertices(), p.faces) for p in asset.parts]
    metrics["iou"] = part_overlap_iou(meshes) if len(meshes) > 1 else 0.0
    metrics["debris"] = mean_debris(asset.parts) if debris is None else debris
    metrics["gt_debris"] = mean_debris(gt.parts)
    return metrics


def nearest_asset(pipeline, image: np.ndarray, data: Path):
    """The retrieval-only baseline: the top-1 asset's own meshes, from the library (or the
    dataset's training split for a bank without one)."""
    key = conditioning.object_embedding(pipeline.encode(image).pooled[0]).numpy()
    hit = pipeline.bank.search(key, 1)[0]
    if pipeline.library is not None:
        return pipeline.library.asset(hit.asset_id)
    return load_asset(Path(data) / "train" / hit.asset_id)


def evaluate_generation(pipeline, data: Path, split: str, settings: Settings,
                        top_ks=TOP_KS, strengths=(), limit: int | None = None, keep: int = 8,
                        progress: bool = True) -> tuple[list[dict], list[tuple]]:
    """Per-(object, row) results and, for the first `keep` objects, (image, parts) of the
    last configuration (the retrieval-initialised one when asked) for the picture."""
    rows, kept = [], []
    settings_rows = configurations(pipeline, top_ks, strengths)
    pictured = settings_rows[-1]
    for folder in tqdm(object_folders(data, split, limit), desc="generation eval",
                       disable=not progress):
        gt = load_asset(folder)
        image = reference_image(folder)
        n = min(len(gt.parts), pipeline.max_parts)
        for k, strength in settings_rows:
            started = time.perf_counter()
            generation = pipeline(image, n, steps=settings.steps, guidance=settings.guidance,
                                  seed=settings.seed, top_k=k, strength=strength)
            seconds = time.perf_counter() - started
            rows.append({"object": folder.name, "row": row_name(k, strength), "seconds": seconds,
                         "empty_parts": sum(r["empty"] for r in generation.reports),
                         **geometry(gt, as_asset(generation.parts), settings.samples,
                                    float(np.mean([r["raw_debris"] for r in generation.reports])))})
            if (k, strength) == pictured and len(kept) < keep:
                kept.append((image, generation.parts, folder.name))
        started = time.perf_counter()
        nearest = nearest_asset(pipeline, image, data)
        seconds = time.perf_counter() - started
        rows.append({"object": folder.name, "row": RETRIEVAL_ONLY, "seconds": seconds,
                     "empty_parts": 0, **geometry(gt, nearest, settings.samples)})
    return rows, kept


def summarise(rows: list[dict], data: Path, split: str, limit: int | None) -> list[dict]:
    """Mean per row, in table order, plus the dataset's own part-overlap IoU."""
    table = []
    manifest = read_manifest(data)
    records = manifest["splits"][split][:limit]
    table.append({"row": "dataset", "iou": float(np.mean([r["part_iou"] for r in records])),
                  "debris": float(np.mean([r["gt_debris"] for r in rows]))})
    for name in dict.fromkeys(r["row"] for r in rows):
        mine = [r for r in rows if r["row"] == name]
        table.append({"row": name, "objects": len(mine),
                      **{key: float(np.mean([r[key] for r in mine]))
                         for key in ("chamfer", "fscore", "iou", "debris", "seconds")},
                      "empty_parts": int(sum(r["empty_parts"] for r in mine))})
    return table


def markdown_table(table: list[dict]) -> str:
    lines = ["| configuration | CD ↓ | F-Score@0.1 ↑ | part IoU ↓ | debris (raw) ↓ | empty parts | "
             "s / object |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        if r["row"] == "dataset":
            lines.append(f"| dataset | – | – | {r['iou']:.4f} | {r['debris']:.2%} | 0 | – |")
        else:
            lines.append(f"| {r['row']} | {r['chamfer']:.4f} | {r['fscore']:.4f} | "
                         f"{r['iou']:.4f} | {r['debris']:.2%} | {r['empty_parts']} | "
                         f"{r['seconds']:.2f} |")
    return "\n".join(lines)


def write_picture(kept: list[tuple], path: Path, tile: int = 256) -> Path:
    """Input image beside the generated parts (part-coloured), one pair per object."""
    from engine.render import Renderer, contact_sheet
    from engine.render.camera import sheet_camera

    camera = sheet_camera(tile)
    images, captions = [], []
    with Renderer() as renderer:
        for image, parts, name in kept:
            images += [image, renderer.render(as_asset(parts), [camera], preview=True)[0].preview]
            captions += [f"{name[:24]}", f"{len(parts)} parts"]
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, path, captions, columns=4, tile=tile)
    return path


def bench_generate(model: Path, image_path: Path, parts: int = 8, repeats: int = 2) -> dict:
    """End-to-end timings of one `parts`-part object (best of `repeats` after a warm-up)."""
    from engine.pipelines.registry import load_pipeline

    image = np.asarray(Image.open(image_path).convert("RGBA"))
    started = time.perf_counter()
    pipeline = load_pipeline(model)
    load = time.perf_counter() - started
    pipeline(image, parts, steps=1)  # warm-up
    best = min((pipeline(image, parts, seed=s) for s in range(repeats)),
               key=lambda g: g.timings["total"])
    return {"load": load, "parts": parts, **best.timings, **best.params}


def print_bench_generate(model: Path, image: Path) -> int:
    """Print the timings; a missing bundle or image is one line saying what to do (status 2)."""
    import sys

    import torch

    for path, what in ((model / MODEL_INDEX, f"no model bundle at {model} (train one with "
                        f"`python -m engine train dit ... --export {model}`)"),
                       (image, f"no image at {image}")):
        if not path.is_file():
            print(f"bench generate: {what}", file=sys.stderr)
            return 2
    r = bench_generate(model, image)
    print(f"{r['parts']}-part object, {r['steps']} steps from σ {r['strength']:g}, guidance "
          f"{r['guidance']}, top-{r['top_k']}, "
          f"{torch.get_num_threads()} threads: {r['total']:.2f} s end to end (encode "
          f"{r['encode']:.2f}, retrieve {r['retrieve']:.3f}, denoise {r['denoise']:.2f}, decode "
          f"{r['decode']:.2f}); bundle load {r['load']:.2f} s")
    return 0
