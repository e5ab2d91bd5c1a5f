"""Procedural part dataset: generate, filter, render, sample and write objects to disk.

Layout of a dataset folder:

    manifest.json                     splits -> object records (written last, atomically)
    <split>/<category>-<seed>/        one folder per object, renamed into place when complete
        asset.npz                     part meshes (local frames), transforms, mesh ids, materials
        meta.json                     labels, transforms, mesh ids, cameras, params, part IoU
        view_XX.png / mask_XX.png     RGBA reference image / part index (255 = background)
        samples.npz                   surface points, normals, part index (for VAE training)

Object seeds come from (dataset seed, split, index, attempt) through one SeedSequence, so
splits never share an object; rejected candidates (the papers' filters: 2-8 parts, mean
part-overlap IoU < 0.5) are replaced by the next attempt. A rerun skips finished objects.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from engine.files import MissingInput, write_json_atomic
from engine.data.asset import Part, PartAsset, mesh_id_name, mesh_id_numbers
from engine.data.categories import categories, generate_asset
from engine.geometry.metrics import part_overlap_iou, sample_surface
from engine.render.camera import orbit_views

SPLITS = ("train", "val", "test")
MIN_PARTS, MAX_PARTS = 2, 8
MAX_MEAN_IOU = 0.5
MAX_ATTEMPTS = 50
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ObjectSpec:
    split: str
    index: int
    category: str
    dataset_seed: int

    def seed(self, attempt: int) -> int:
        """The asset seed of one candidate; distinct for every (split, index, attempt)."""
        key = (SPLITS.index(self.split), self.index, attempt)
        return int(np.random.SeedSequence(self.dataset_seed, spawn_key=key).generate_state(1)[0])


@dataclass(frozen=True)
class BuildOptions:
    views: int = 4
    image_size: int = 256
    samples: int = 20_480


def object_name(category: str, seed: int) -> str:
    return f"{category}-{seed:010d}"


def check_asset(asset: PartAsset) -> tuple[bool, str, float]:
    """The papers' filters: (kept, reason if rejected, mean part-overlap IoU)."""
    n = len(asset.parts)
    if not MIN_PARTS <= n <= MAX_PARTS:
        return False, f"{n} parts", float("nan")
    iou = part_overlap_iou([(p.object_vertices(), p.faces) for p in asset.parts])
    if iou >= MAX_MEAN_IOU:
        return False, f"mean part IoU {iou:.2f}", iou
    return True, "", iou


def accepted_asset(spec: ObjectSpec) -> tuple[PartAsset, float, list[str]]:
    """First candidate of `spec` that passes the filters, with its IoU and the rejections."""
    rejected = []
    for attempt in range(MAX_ATTEMPTS):
        asset = generate_asset(spec.category, spec.seed(attempt))
        kept, reason, iou = check_asset(asset)
        if kept:
            return asset, iou, rejected
        rejected.append(reason)
    raise RuntimeError(f"{spec.category}: no candidate passed the filters in {MAX_ATTEMPTS} "
                       f"attempts ({', '.join(sorted(set(rejected)))})")


def surface_samples(asset: PartAsset, count: int, seed: int) -> dict[str, np.ndarray]:
    """Area-weighted samples over the whole object, each labelled with its part index."""
    verts, faces, owner, offset = [], [], [], 0
    for k, part in enumerate(asset.parts):
        verts.append(part.object_vertices())
        faces.append(part.faces + offset)
        owner.append(np.full(len(part.faces), k, dtype=np.int8))
        offset += len(part.vertices)
    s = sample_surface(np.concatenate(verts), np.concatenate(faces), count, np.random.default_rng(seed))
    return {"points": s.points, "normals": s.normals, "part": np.concatenate(owner)[s.faces]}


def save_asset_arrays(path: Path, asset: PartAsset) -> None:
    """Part meshes as flat arrays with per-part offsets (np.load-able without pickle)."""
    parts = asset.parts
    np.savez_compressed(
        path,
        vertices=np.concatenate([p.vertices for p in parts]),
        faces=np.concatenate([p.faces for p in parts]),
        vertex_counts=np.array([len(p.vertices) for p in parts], dtype=np.int64),
        face_counts=np.array([len(p.faces) for p in parts], dtype=np.int64),
        transforms=np.stack([p.transform for p in parts]),
        mesh_ids=mesh_id_numbers(parts),
        part_materials=np.array([p.material for p in parts], dtype=np.int64),
        materials=asset.materials,
    )


def read_manifest(data: str | Path) -> dict:
    """A built dataset's manifest, or MissingInput saying how to build the dataset."""
    path = Path(data) / "manifest.json"
    if not path.is_file():
        raise MissingInput(f"no dataset at {data} ({path.name} not found); build it first: "
                           f"python -m engine data build --out {data} --train 1500 --val 150 "
                           f"--test 180 --views 4 --seed 0")
    return json.loads(path.read_text())


def load_asset(folder: Path) -> PartAsset:
    """Read an object folder written by `build_dataset` back into a PartAsset."""
    meta = json.loads((folder / "meta.json").read_text())
    arrays = np.load(folder / "asset.npz")
    v_split = np.cumsum(arrays["vertex_counts"])[:-1]
    f_split = np.cumsum(arrays["face_counts"])[:-1]
    parts = [Part(v, f, t, label, k, mesh_id_name(int(m)), int(mat))
             for k, (label, v, f, t, m, mat) in enumerate(zip(
                 meta["labels"], np.split(arrays["vertices"], v_split),
                 np.split(arrays["faces"], f_split), arrays["transforms"], arrays["mesh_ids"],
                 arrays["part_materials"]))]
    return PartAsset(meta["category"], meta["seed"], parts, arrays["materials"], meta["params"])


def _write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, optimize=False, compress_level=3)


def write_object(root: Path, spec: ObjectSpec, options: BuildOptions, renderer) -> dict:
    """Build one object into root/<split>/<name>, atomically; returns its manifest record."""
    asset, iou, rejected = accepted_asset(spec)
    name = object_name(asset.category, asset.seed)
    final = root / spec.split / name
    record = {"name": name, "category": asset.category, "seed": asset.seed,
              "parts": len(asset.parts), "part_iou": iou, "rejected": rejected}
    if final.exists():
        return record
    tmp = root / spec.split / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # Frame the object's own bounding sphere so it fills the image whatever its proportions.
    radius = max(float(np.linalg.norm(p.object_vertices(), axis=1).max()) for p in asset.parts)
    cameras = orbit_views(options.views, seed=asset.seed, size=options.image_size, radius=radius)
    views = renderer.render(asset, cameras)
    for k, view in enumerate(views):
        _write_png(tmp / f"view_{k:02d}.png", view.rgba)
        _write_png(tmp / f"mask_{k:02d}.png", view.mask)
    np.savez_compressed(tmp / "samples.npz", **surface_samples(asset, options.samples, asset.seed))
    save_asset_arrays(tmp / "asset.npz", asset)
    meta = {
        "format": FORMAT_VERSION, "category": asset.category, "seed": asset.seed, "split": spec.split,
        "labels": asset.labels, "mesh_ids": [p.mesh_id for p in asset.parts],
        "transforms": [p.transform.tolist() for p in asset.parts], "params": asset.params,
        "part_iou": iou, "materials": asset.materials.tolist(),
        "views": [{"image": f"view_{k:02d}.png", "mask": f"mask_{k:02d}.png",
                   "K": v.camera.K.tolist(), "extrinsic": v.camera.extrinsic.tolist(),
                   "width": v.camera.width, "height": v.camera.height} for k, v in enumerate(views)],
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, final)
    return record


# One renderer per pool process, started lazily and closed when the process exits.
_worker_renderer = None


def _pool_job(args: tuple[Path, ObjectSpec, BuildOptions]) -> tuple[ObjectSpec, dict]:
    global _worker_renderer
    if _worker_renderer is None:
        from multiprocessing.util import Finalize

        from engine.render.renderer import Renderer

        _worker_renderer = Renderer()
        Finalize(None, _worker_renderer.close, exitpriority=10)
    root, spec, options = args
    return spec, write_object(root, spec, options, _worker_renderer)


def plan(counts: dict[str, int], seed: int) -> list[ObjectSpec]:
    """Objects to build: categories assigned round-robin within each split."""
    names = categories()
    return [ObjectSpec(split, i, names[i % len(names)], seed)
            for split in SPLITS for i in range(counts.get(split, 0))]


def build_dataset(root: Path, counts: dict[str, int], seed: int = 0, options: BuildOptions = BuildOptions(),
                  workers: int = 2, progress: bool = True) -> dict:
    """Build (or finish building) a dataset; returns the manifest, which includes throughput."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    specs = plan(counts, seed)
    records: dict[tuple[str, int], dict] = {}
    started = time.perf_counter()
    jobs = [(root, spec, options) for spec in specs]
    with tqdm(total=len(jobs), unit="obj", desc="building dataset", disable=not progress) as bar:
        if workers <= 1:
            from engine.render.renderer import Renderer

            with Renderer() as renderer:
                for spec in specs:
                    records[(spec.split, spec.index)] = write_object(root, spec, options, renderer)
                    bar.update()
        else:
            pool = multiprocessing.get_context("spawn").Pool(workers)
            finished = False
            try:
                for spec, record in pool.imap_unordered(_pool_job, jobs):
                    records[(spec.split, spec.index)] = record
                    bar.update()
                finished = True
            finally:
                # Closing lets workers exit normally, so their renderers shut down cleanly.
                if finished:
                    pool.close()
                else:
                    pool.terminate()
                pool.join()
    elapsed = time.perf_counter() - started
    manifest = {
        "format": FORMAT_VERSION, "seed": seed, "categories": categories(),
        "options": {"views": options.views, "image_size": options.image_size, "samples": options.samples},
        "splits": {s: [records[(s, i)] for i in range(counts.get(s, 0))] for s in SPLITS},
        "build_seconds": elapsed, "objects_per_second": len(jobs) / elapsed if elapsed > 0 else 0.0,
    }
    write_json_atomic(root / "manifest.json", manifest)
    return manifest
