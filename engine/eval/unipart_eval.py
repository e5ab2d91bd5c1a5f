"""UniPart figures (UniPart §4, Table 1 protocol) beside PartRAG's default on the same objects.

Every test object's first reference view; the assembled parts against the ground truth:
CD and F-Score at 0.05 and 0.1 over surface samples, best of 4 rotations about the up axis
(UniPart's protocol; the rotation with the lowest CD is kept), part-overlap IoU, debris of
the raw parts and parts that decode to nothing. Rows, with the object's own part count:
- UniPart (dual-space): NCS meshes placed by their GCS boxes, what `generate` ships;
- GCS only: the GCS meshes themselves (no NCS branch);
- NCS placed by ground-truth boxes: each generated part matched to a ground-truth part
  (Hungarian on box centres) and placed at its box;
- NCS placed by its segment's anchors: at the box of the D_pos anchors of the part's latents
  in Ẑ (no GCS branch, no ground truth);
- other bundles' dual-space rows, by name (ablations: e.g. a part DiT trained without
  global attention, Eq. 5, or for fewer steps; with the same whole stage they see the same
  Ẑ and segments);
- Ẑ alone: the whole-level DiT's latent decoded by the Geom-Seg VAE as one piece, the
  ceiling the part stage works under;
- UniPart with the automatic part count (as many parts as the segmentation finds), which
  also gives the part-count accuracy (exact and within ±1);
- PartRAG's default configuration and its retrieval-only baseline (the nearest asset).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from engine.data.dataset import load_asset
from engine.eval.bench import whole_mesh
from engine.eval.generation import RETRIEVAL_ONLY, nearest_asset, reference_image
from engine.eval.vae_eval import object_folders
from engine.geometry.metrics import (chamfer_from_distances, fscore_from_distances,
                                     nearest_distances, part_overlap_iou, sample_surface)
from engine.geometry.pieces import mean_debris
from engine.pipelines.decode import decode_parts
from engine.pipelines.outputs import as_asset
from engine.training.unipart_data import ncs_frame

DUAL, GCS_ONLY, GT_BOXES, ANCHOR_BOXES, WHOLE_Z, AUTOMATIC = (
    "UniPart (dual-space)", "UniPart, GCS only", "UniPart, NCS placed by ground-truth boxes",
    "UniPart, NCS placed by its segment's anchors",
    "UniPart's Ẑ alone (one piece, Geom-Seg decoder)", "UniPart, automatic part count")
PARTRAG = "PartRAG default"
ROTATIONS = 4


def rotated(vertices: np.ndarray, quarter: int) -> np.ndarray:
    """Vertices turned `quarter` × 90° about +Y (the up axis)."""
    c, s = np.cos(quarter * np.pi / 2), np.sin(quarter * np.pi / 2)
    return vertices @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]]).T


def scores(gt, asset, samples: int) -> dict:
    """CD, F@0.05, F@0.1 at the best of ROTATIONS turns about the up axis, part IoU, debris."""
    a = sample_surface(*whole_mesh(gt), samples, np.random.default_rng(0)).points
    vertices, faces = whole_mesh(asset)
    best = None
    for quarter in range(ROTATIONS):
        b = sample_surface(rotated(vertices, quarter), faces, samples,
                           np.random.default_rng(0)).points
        d_ab, d_ba = nearest_distances(a, b)
        row = {"chamfer": chamfer_from_distances(d_ab, d_ba),
               "f05": fscore_from_distances(d_ab, d_ba, 0.05),
               "f10": fscore_from_distances(d_ab, d_ba, 0.1)}
        if best is None or row["chamfer"] < best["chamfer"]:
            best = row
    meshes = [(p.object_vertices(), p.faces) for p in asset.parts]
    best["iou"] = part_overlap_iou(meshes) if len(meshes) > 1 else 0.0
    return best


def box_of(points: np.ndarray) -> list[float]:
    """Centre and half the longest side of the points' box (a part's NCS frame)."""
    centre, half = ncs_frame(points)
    return [*centre, half]


def boxes_of(parts) -> np.ndarray:
    """(n, 4): each part's object-frame box."""
    return np.array([box_of(p.object_vertices() if hasattr(p, "object_vertices") else
                            p.vertices + p.transform[:3, 3]) for p in parts])


def placed_on(mesh, box: np.ndarray):
    """A local mesh scaled so half its longest side is box[3], centred on box[:3]."""
    scale = box[3] / max(np.ptp(mesh.vertices, 0).max() / 2, 1e-9)
    transform = mesh.transform.copy()
    transform[:3, 3] = box[:3]
    return replace(mesh, vertices=(mesh.vertices * scale).astype(np.float32),
                   transform=transform)


def placed_at(meshes, generated_boxes: np.ndarray, gt_boxes: np.ndarray):
    """The NCS meshes moved onto the matched ground-truth boxes (Hungarian on centres;
    unmatched parts keep their own boxes)."""
    cost = np.linalg.norm(generated_boxes[:, None, :3] - gt_boxes[None, :, :3], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    out = list(meshes)
    for r, c in zip(rows, cols):
        out[r] = placed_on(meshes[r], gt_boxes[c])
    return out


MIN_ANCHOR_HALF = 0.05  # a segment of one anchor (or a row of them) still gets a size:
# about half the spacing of 128 anchors over an object 2 units across


def anchor_boxes(anchors: np.ndarray, segments: np.ndarray, count: int) -> np.ndarray:
    """(count, 4): each segment's anchor points' box, centre and half its longest side
    (at least MIN_ANCHOR_HALF)."""
    boxes = np.array([box_of(anchors[segments == k]) for k in range(count)])
    boxes[:, 3] = np.maximum(boxes[:, 3], MIN_ANCHOR_HALF)
    return boxes


@torch.no_grad()
def evaluate_unipart(unipart, partrag, data: Path, split: str, steps: int, guidance: float,
                     limit: int | None = None, samples: int = 50_000, keep: int = 8,
                     progress: bool = True, ablations: dict | None = None,
                     geomseg=None) -> tuple[list[dict], list[tuple]]:
    """Per-(object, row) results and, for the first `keep` objects, what the picture shows
    (image, segmentation labels of Ẑ's anchors, dual-space parts). `ablations`: row name ->
    another UniPart pipeline whose dual-space output is scored; `geomseg`: the Geom-Seg VAE
    that decodes Ẑ alone (None: no such row)."""
    rows, kept = [], []
    full = unipart.extract
    for folder in tqdm(object_folders(data, split, limit), desc="UniPart eval",
                       disable=not progress):
        gt = load_asset(folder)
        image = reference_image(folder)
        n = min(len(gt.parts), unipart.max_parts)
        started = time.perf_counter()
        sampled = unipart.latents(image, n, steps, guidance, seed=0)
        dual = unipart.decode(sampled.gcs, sampled.ncs, None, None)
        seconds = time.perf_counter() - started
        shapes = decode_parts(unipart.vae, sampled.ncs, full)
        gcs = decode_parts(unipart.vae, sampled.gcs, full)
        anchors = sampled.anchors.cpu().numpy()
        segments = sampled.segments.cpu().numpy()
        boxes = anchor_boxes(anchors, segments, sampled.count)
        variants = {DUAL: (dual, seconds), GCS_ONLY: (gcs, None),
                    GT_BOXES: (placed_at(shapes, boxes_of(gcs), boxes_of(gt.parts)), None),
                    ANCHOR_BOXES: ([placed_on(m, b) for m, b in zip(shapes, boxes)], None)}
        for name, other in (ablations or {}).items():
            ablated = other.latents(image, n, steps, guidance, seed=0)
            variants[name] = (other.decode(ablated.gcs, ablated.ncs, None, None), None)
        if geomseg is not None:
            variants[WHOLE_Z] = (decode_parts(geomseg.vae, sampled.z[None], full), None)
        for name, (meshes, spent) in variants.items():
            parts = [m.as_part("part", i) for i, m in enumerate(meshes)]
            rows.append({"object": folder.name, "row": name, "seconds": spent,
                         "empty_parts": sum(m.empty for m in meshes),
                         "debris": float(np.mean([m.raw_debris for m in meshes])),
                         **scores(gt, as_asset(parts), samples)})
        if len(kept) < keep:
            kept.append((image, anchors, segments,
                         [m.as_part("part", i) for i, m in enumerate(dual)], folder.name))
        started = time.perf_counter()
        automatic = unipart(image, None, steps=steps, guidance=guidance, seed=0)
        rows.append({"object": folder.name, "row": AUTOMATIC,
                     "seconds": time.perf_counter() - started,
                     "empty_parts": sum(r["empty"] for r in automatic.reports),
                     "debris": float(np.mean([r["raw_debris"] for r in automatic.reports])),
                     "parts": len(automatic.parts), "gt_parts": len(gt.parts),
                     **scores(gt, as_asset(automatic.parts), samples)})
        if partrag is not None:
            started = time.perf_counter()
            generation = partrag(image, n)
            rows.append({"object": folder.name, "row": PARTRAG,
                         "seconds": time.perf_counter() - started,
                         "empty_parts": sum(r["empty"] for r in generation.reports),
                         "debris": float(np.mean([r["raw_debris"] for r in generation.reports])),
                         **scores(gt, as_asset(generation.parts), samples)})
            nearest = nearest_asset(partrag, image, data)
            rows.append({"object": folder.name, "row": RETRIEVAL_ONLY, "seconds": None,
                         "empty_parts": 0, "debris": mean_debris(nearest.parts),
                         **scores(gt, nearest, samples)})
    return rows, kept


def summarise(rows: list[dict]) -> tuple[list[dict], dict]:
    """Mean per row in table order, and the automatic part count's accuracy."""
    table = []
    for name in dict.fromkeys(r["row"] for r in rows):
        mine = [r for r in rows if r["row"] == name]
        timed = [r["seconds"] for r in mine if r["seconds"] is not None]
        table.append({"row": name, "objects": len(mine),
                      **{k: float(np.mean([r[k] for r in mine]))
                         for k in ("chamfer", "f05", "f10", "iou", "debris")},
                      "empty_parts": int(sum(r["empty_parts"] for r in mine)),
                      "seconds": float(np.mean(timed)) if timed else None})
    counted = [r for r in rows if r["row"] == AUTOMATIC]
    diff = np.array([r["parts"] - r["gt_parts"] for r in counted])
    count = {"objects": len(counted), "exact": float(np.mean(diff == 0)),
             "within_one": float(np.mean(np.abs(diff) <= 1)),
             "mean_found": float(np.mean([r["parts"] for r in counted])),
             "mean_gt": float(np.mean([r["gt_parts"] for r in counted]))}
    return table, count


def markdown(table: list[dict], count: dict) -> str:
    lines = ["| configuration | CD ↓ | F@0.05 ↑ | F@0.1 ↑ | part IoU ↓ | debris (raw) ↓ | "
             "empty parts | s / object |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        seconds = "–" if r["seconds"] is None else f"{r['seconds']:.2f}"
        lines.append(f"| {r['row']} | {r['chamfer']:.4f} | {r['f05']:.4f} | {r['f10']:.4f} | "
                     f"{r['iou']:.4f} | {r['debris']:.2%} | {r['empty_parts']} | {seconds} |")
    lines.append(f"\nAutomatic part count over {count['objects']} objects: exact "
                 f"{count['exact']:.0%}, within ±1 {count['within_one']:.0%} (mean "
                 f"{count['mean_found']:.2f} found, {count['mean_gt']:.2f} in the ground truth)")
    return "\n".join(lines)


def write_picture(kept: list[tuple], path: Path, tile: int = 256) -> Path:
    """Per object: the input, Ẑ's latent segmentation (anchor points coloured by part, seen
    from the front and the side) and the dual-space parts."""
    from engine.render import Renderer, contact_sheet
    from engine.render.camera import sheet_camera
    from engine.render.segmentation import draw_segmentation

    camera = sheet_camera(tile)
    images, captions = [], []
    with Renderer() as renderer:
        for image, anchors, segments, parts, name in kept:
            images += [image, draw_segmentation(anchors, segments, tile),
                       renderer.render(as_asset(parts), [camera], preview=True)[0].preview]
            captions += [name[:24], f"{int(segments.max()) + 1} latent segments",
                         f"{len(parts)} parts"]
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, path, captions, columns=6, tile=tile)
    return path
