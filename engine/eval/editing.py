"""Part-editing figures (PartRAG Table 3 protocol, with our own columns).

Each test object's first view goes through the default pipeline with the object's own part
count; the asset then gets one swap (a part replaced by a library part of the same label,
chosen at random among the editor's candidates), one refine of a random part and one
assembly of 2-3 random parts. Per edit:
    preserved   the frozen parts' arrays and transforms are bit-identical, and the IoU of
                their union before/after at 64³ (the paper's preservation IoU)
    seamless    every frozen neighbour the target touched before (surfaces within CONTACT)
                it still touches after
    semantic    swaps: the label of the library part nearest the edited part is the
                requested part's label (nearest in the retriever's part space when one is
                installed, else by mean latents: PartEditor.nearest_label)
    seconds     wall time of the edit
The ablation rows rerun the first objects' refines and swaps "w/o re-noised context" (frozen
parts enter every step clean) and "w/o masked flow" (every part sampled, the targets kept).
`time_edits` measures a 1-part refine of an 8-part asset at K = 20 and `place`.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from engine.data.dataset import load_asset
from engine.eval.generation import reference_image
from engine.eval.vae_eval import object_folders
from engine.geometry.closest import ClosestPoints
from engine.geometry.metrics import sample_surface, voxelize_solid
from engine.pipelines.seams import CONTACT
CONTACT_SAMPLES = 4000
PRESERVATION_GRID = 64
ROWS = ("masked flow (ours)", "w/o re-noised context", "w/o masked flow")


def surface_gap(a, b, rng: np.random.Generator) -> float:
    """Smallest distance between two parts' surfaces, from samples of each onto the other."""
    gaps = []
    for one, other in ((a, b), (b, a)):
        points = sample_surface(one.object_vertices(), one.faces, CONTACT_SAMPLES, rng).points
        gaps.append(ClosestPoints(other.object_vertices(), other.faces).query(points)[1].min())
    return float(min(gaps))


def touching(part, others: dict, rng: np.random.Generator) -> set[int]:
    """Indices of the parts in `others` (index -> Part) whose surface is within CONTACT."""
    return {i for i, other in others.items() if surface_gap(part, other, rng) <= CONTACT}


def union_occupancy(parts) -> np.ndarray:
    grid = np.zeros((PRESERVATION_GRID,) * 3, bool)
    for p in parts:
        grid |= voxelize_solid(p.object_vertices(), p.faces, PRESERVATION_GRID)
    return grid


def identical(a, b) -> bool:
    return (np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
            and np.array_equal(a.transform, b.transform))


def score_edit(editor, before: list, after: list, targets: list[int], requested: str | None,
               rng: np.random.Generator) -> dict:
    frozen = {i: p for i, p in enumerate(before) if i not in targets}
    unchanged = all(identical(p, after[i]) for i, p in frozen.items())
    old, new = union_occupancy(frozen.values()), union_occupancy(after[i] for i in frozen)
    union = (old | new).sum()
    seamless = True
    for t in targets:
        before_contacts = touching(before[t], frozen, rng)
        kept = touching(after[t], {i: after[i] for i in before_contacts}, rng)
        seamless &= kept == before_contacts
    result = {"bit_identical": unchanged, "preservation_iou": float((old & new).sum() / union)
              if union else 1.0, "seamless": seamless}
    if requested is not None:
        result["semantic"] = editor.nearest_label(after[targets[0]].latent) == requested
    return result


def plan_edits(editor, parts: list, rng: np.random.Generator) -> list[tuple]:
    """(operation, targets, options, requested label) for one asset: swap, refine, assemble."""
    n = len(parts)
    edits = []
    target = int(rng.integers(n))
    candidates = editor.search(parts, target, k=12)
    if candidates:
        source = candidates[int(rng.integers(len(candidates)))]
        label = editor.library_part(source).label
        edits.append(("swap", [target], {"source": source}, label))
    edits.append(("refine", [int(rng.integers(n))], {}, None))
    if n >= 3:
        chosen = rng.choice(n, size=int(rng.integers(2, min(3, n - 1) + 1)), replace=False)
        edits.append(("assemble", sorted(int(i) for i in chosen), {}, None))
    return edits


def evaluate_editing(editor, data, split: str, limit: int | None, ablation_limit: int,
                     steps: int | None = None, seed: int = 0, progress: bool = True) -> list[dict]:
    """One row per (object, edit, configuration)."""
    rows = []
    for number, folder in enumerate(tqdm(object_folders(data, split, limit), desc="editing eval",
                                         disable=not progress)):
        gt = load_asset(folder)
        image = reference_image(folder)
        n = min(len(gt.parts), editor.pipeline.max_parts)
        if n < 2:
            continue
        asset = editor.pipeline(image, n, seed=seed)
        rng = np.random.default_rng([seed, number])
        for operation, targets, options, requested in plan_edits(editor, asset.parts, rng):
            configs = [(ROWS[0], {})]
            if number < ablation_limit and operation != "assemble":
                configs += [(ROWS[1], {"renoise_frozen": False}), (ROWS[2], {"masked": False})]
            for row, ablation in configs:
                started = time.perf_counter()
                edit = editor(asset.parts, targets, operation, image=image, steps=steps,
                              seed=seed + 1, **options, **ablation)
                seconds = time.perf_counter() - started
                rows.append({"object": folder.name, "operation": operation, "row": row,
                             "targets": targets, "parts": n, "seconds": seconds,
                             **score_edit(editor, asset.parts, edit.parts, targets, requested,
                                          np.random.default_rng(number))})
    return rows


def multiview_consistency(pipeline, data, split: str, limit: int, views: int = 4,
                          samples: int = 50_000, seed: int = 0) -> dict:
    """PartRAG's multi-view consistency: per object, the variance of CD to the ground truth
    over generations from each of its `views` reference views; the mean over objects."""
    from engine.eval.bench import whole_mesh
    from engine.geometry.metrics import compare_meshes
    from engine.pipelines.outputs import as_asset
    from PIL import Image

    variances = []
    for folder in tqdm(object_folders(data, split, limit), desc="multi-view consistency"):
        gt = load_asset(folder)
        n = min(len(gt.parts), pipeline.max_parts)
        chamfers = []
        for v in range(views):
            image = np.asarray(Image.open(folder / f"view_{v:02d}.png").convert("RGBA"))
            parts = pipeline(image, n, seed=seed).parts
            chamfers.append(compare_meshes(whole_mesh(gt), whole_mesh(as_asset(parts)),
                                           samples)["chamfer"])
        variances.append(float(np.var(chamfers)))
    return {"objects": len(variances), "views": views, "cd_variance": float(np.mean(variances))}


def time_edits(editor, image: np.ndarray, repeats: int = 3, seed: int = 0) -> dict:
    """Median seconds of a 1-part refine (K = 20) of an 8-part asset, and of a place."""
    parts = editor.pipeline(image, 8, seed=seed).parts
    refine, place = [], []
    source = editor.search(parts, 0, k=1)
    for r in range(repeats):
        started = time.perf_counter()
        editor(parts, [r % 8], "refine", image=image, steps=20, seed=r)
        refine.append(time.perf_counter() - started)
        if source:
            started = time.perf_counter()
            editor(parts, [0], "place", source=source[0])
            place.append(time.perf_counter() - started)
    return {"refine_1_of_8_k20": float(np.median(refine)),
            "place": float(np.median(place)) if place else None}


def summarise(rows: list[dict]) -> list[dict]:
    """Per (configuration, operation) and per configuration over all operations."""
    table = []
    for row in ROWS:
        mine = [r for r in rows if r["row"] == row]
        for operation in (None, "swap", "refine", "assemble"):
            group = [r for r in mine if operation is None or r["operation"] == operation]
            if not group:
                continue
            semantic = [r["semantic"] for r in group if "semantic" in r]
            table.append({"row": row, "operation": operation or "all", "edits": len(group),
                          "bit_identical": float(np.mean([r["bit_identical"] for r in group])),
                          "preservation_iou": float(np.mean([r["preservation_iou"] for r in group])),
                          "seamless": float(np.mean([r["seamless"] for r in group])),
                          "semantic": float(np.mean(semantic)) if semantic else None,
                          "seconds": float(np.median([r["seconds"] for r in group]))})
    return table


def markdown_table(table: list[dict]) -> str:
    lines = ["| configuration | edits | frozen parts bit-identical | preservation IoU (64³) | "
             "seamless | semantic agreement (swaps) | median s / edit |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        semantic = "–" if r["semantic"] is None else f"{r['semantic']:.1%}"
        lines.append(f"| {r['row']}, {r['operation']} | {r['edits']} | {r['bit_identical']:.1%} | "
                     f"{r['preservation_iou']:.4f} | {r['seamless']:.1%} | {semantic} | "
                     f"{r['seconds']:.2f} |")
    return "\n".join(lines)
