"""Filling a part library: from a rendered dataset (spherical k-means medoids of the
candidates' object embeddings, PartRAG §4.1) or from external files (rendered here)."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.data.asset import PartAsset
from engine.data.cache import save_npz
from engine.data.dataset import load_asset
from engine.data.vae_data import object_seed, split_names
from engine.retrieval.compact import encode_mask, encode_rgba, thumbnail
from engine.retrieval.encoders import ImageEncoder
from engine.retrieval.importers import import_asset
from engine.files import write_json_atomic
from engine.retrieval.library import (DEFAULT_SIZE, INDEX_NAME, THUMBNAIL, AssetRecord,
                                      LibraryError, PartLibrary)
from engine.retrieval.library_writer import write_library
from engine.retrieval.selection import coverage, spherical_kmeans_medoids
from engine.retrieval.shape import PartEncoder
from engine.retrieval.views import read_views, view_features

VIEWS = 4  # views rendered for an imported asset, as the dataset has
STORED_VIEWS = 1  # views kept per asset: retrieval conditioning reads the first one


def embed(encoders: list[ImageEncoder], images: list[np.ndarray], masks: list[np.ndarray],
          num_parts: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per encoder: the object embedding (the encoder's pooled vector averaged over the
    views) and part embeddings (mask-pooled tokens averaged over the views showing each part;
    zero for a part no view shows)."""
    objects, parts = {}, {}
    for encoder in encoders:
        features = view_features(encoder, images, masks, num_parts)
        objects[encoder.key] = features.pooled.mean(0).numpy()
        parts[encoder.key] = np.nan_to_num(features.part_mean(), nan=0.0)
    return objects, parts


def make_record(asset_id: str, source: str, asset: PartAsset, images: list[np.ndarray],
                masks: list[np.ndarray], embeddings, part_encoder: PartEncoder,
                stored_views: int) -> AssetRecord:
    """An asset with its latents, embeddings (made from all its views) and the first
    `stored_views` views and masks, encoded compactly, plus a thumbnail of view 0."""
    objects, parts = embeddings
    return AssetRecord(
        asset_id, asset.category, source, asset,
        part_encoder.encode(asset, object_seed(asset_id)).astype(np.float16),
        [encode_rgba(v) for v in images[:stored_views]],
        [encode_mask(m) for m in masks[:stored_views]],
        thumbnail(images[0], THUMBNAIL), objects, parts)


BUILDING = ".building"  # a build's resumable work inside the library folder


def _cache_folder(out: Path, settings: dict) -> Path:
    """`out`/.building, emptied when it holds the work of other settings (data, split,
    encoders, VAE, views): a rerun with the same command resumes from it."""
    cache = Path(out) / BUILDING
    stamp = cache / "settings.json"
    if cache.is_dir() and (not stamp.is_file() or json.loads(stamp.read_text()) != settings):
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stamp, settings)
    return cache


def _embedded(cache: Path, name: str, folder: Path, encoders: list[ImageEncoder]):
    """A candidate's embeddings, computed once into the cache."""
    path = cache / "embeddings" / f"{name}.npz"
    if not path.is_file():
        meta = json.loads((folder / "meta.json").read_text())
        images, masks = read_views(folder)
        objects, parts = embed(encoders, images, masks, len(meta["labels"]))
        save_npz(path, {**{f"object.{k}": v for k, v in enumerate(objects.values())},
                        **{f"part.{k}": v for k, v in enumerate(parts.values())}})
    with np.load(path) as arrays:
        keys = [e.key for e in encoders]
        return ({key: arrays[f"object.{k}"] for k, key in enumerate(keys)},
                {key: arrays[f"part.{k}"] for k, key in enumerate(keys)})


def build_library(data: Path, out: Path, encoders: list[ImageEncoder], part_encoder: PartEncoder,
                  size: int = DEFAULT_SIZE, split: str = "train", limit: int | None = None,
                  seed: int = 0, progress: bool = True,
                  stored_views: int = STORED_VIEWS) -> dict:
    """Embed every candidate of the split (all its views), keep `size` medoids of spherical
    k-means over the first encoder's object embeddings, and write them as a library with
    the first `stored_views` views of each. Returns a summary.

    Memory stays bounded however many candidates: only the selecting encoder's object
    embeddings are held; every candidate's embeddings and every chosen asset (as a one-asset
    library) are kept in `out`/.building as they are made, so an interrupted build resumes
    where it stopped, and the library is written asset by asset at the end."""
    started = time.perf_counter()
    if stored_views < 0:
        raise LibraryError(f"stored views must be 0 or more, got {stored_views}")
    names = split_names(data, split)[:limit]
    if size > len(names):
        raise LibraryError(f"cannot choose {size} assets among {len(names)} candidates in "
                           f"{data} {split}")
    cache = _cache_folder(out, {"data": str(Path(data).resolve()), "split": split,
                                "encoders": [e.key for e in encoders],
                                "vae": part_encoder.describe(), "stored_views": stored_views})
    selector = encoders[0].key
    features = np.stack([
        _embedded(cache, name, Path(data) / split / name, encoders)[0][selector]
        for name in tqdm(names, desc="embedding candidates", unit="obj", disable=not progress)])
    chosen = spherical_kmeans_medoids(features, size, seed=seed)
    staged = []
    for i in tqdm(chosen, desc="encoding exemplars", unit="obj", disable=not progress):
        staged.append(cache / "assets" / names[i])
        if (staged[-1] / INDEX_NAME).is_file():
            continue
        folder = Path(data) / split / names[i]
        images, masks = read_views(folder)
        record = make_record(names[i], f"dataset:{split}/{names[i]}", load_asset(folder),
                             images, masks, _embedded(cache, names[i], folder, encoders),
                             part_encoder, stored_views)
        write_library(staged[-1], [record], {e.key: e.token_dim for e in encoders},
                      part_encoder.describe(), stored_views)
    summary = {"candidates": len(names), "assets": len(chosen), "selected_with": selector,
               "coverage": coverage(features, chosen),
               "built_from": f"{data} {split}", "seconds": 0.0}
    selection = {k: summary[k] for k in ("candidates", "selected_with", "coverage", "built_from")}
    write_library(out, _staged_records(staged, progress), {e.key: e.token_dim for e in encoders},
                  part_encoder.describe(), stored_views, {"selection": selection})
    shutil.rmtree(cache)
    summary["seconds"] = time.perf_counter() - started
    return summary


def _staged_records(folders: list[Path], progress: bool = False):
    """The record of each one-asset library, one at a time."""
    for folder in tqdm(folders, desc="writing library", unit="obj", disable=not progress):
        yield from PartLibrary.load(folder).iter_records()


def render_asset(renderer, asset: PartAsset,
                 seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGBA views and part masks of an asset, framed as the dataset's are."""
    from engine.render.camera import orbit_views

    radius = max(float(np.linalg.norm(p.object_vertices(), axis=1).max()) for p in asset.parts)
    views = renderer.render(asset, orbit_views(VIEWS, seed=seed, radius=radius))
    return [v.rgba for v in views], [v.mask for v in views]


MESH_SUFFIXES = (".glb", ".gltf", ".obj")
ADDING = ".adding"  # assets of an unfinished `library add`, kept so a rerun resumes


def asset_files(paths: list[Path]) -> list[Path]:
    """Files as given, and the GLB/glTF/OBJ files inside folders (recursively, sorted)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
        else:
            files.append(path)
    return files


@dataclass
class AddReport:
    added: list[str]  # new asset ids
    skipped: list[tuple[Path, str]]  # files left out and why


def add_assets(library_folder: Path, paths: list[Path], encoders: list[ImageEncoder],
               part_encoder: PartEncoder, category: str | None = None,
               labels: dict[str, str] | None = None, progress: bool = True) -> AddReport:
    """Import files (GLB/glTF/OBJ; folders are searched for them), render and embed each,
    and rewrite the library with them appended, asset by asset. A file that cannot be
    imported (unreadable, no mesh parts, already in the library, ...) is skipped with its
    reason and the others go on. Each imported asset is kept in `library`/.adding until the
    rewrite, so an interrupted add resumes where it stopped."""
    library = PartLibrary.load(library_folder)
    keys = [e.key for e in encoders]
    if keys != library.encoders:
        raise LibraryError(f"the library holds embeddings of {library.encoders}; adding needs "
                           f"exactly those encoders, got {keys}")
    shape = part_encoder.describe()
    stored = library.info["shape"]
    if (shape["tokens"], shape["channels"]) != (stored["tokens"], stored["channels"]):
        raise LibraryError(f"the library's latents are {stored['tokens']}x{stored['channels']} "
                           f"({stored['vae']}); {part_encoder.folder} gives "
                           f"{shape['tokens']}x{shape['channels']}")
    from engine.render.renderer import Renderer

    files, dims = asset_files(paths), {e.key: e.token_dim for e in encoders}
    stage, views = Path(library_folder) / ADDING, library.info["stored_views"]
    report, known = AddReport([], []), set(library.ids)
    with Renderer() as renderer:
        for path in tqdm(files, desc="importing", unit="file", disable=not progress):
            try:
                asset_id = f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
                if asset_id in known:
                    raise LibraryError(f"already in the library as {asset_id}")
                if not (stage / asset_id / INDEX_NAME).is_file():
                    asset = import_asset(path, category or path.stem, labels,
                                         every_label=len(files) == 1)
                    images, masks = render_asset(renderer, asset, object_seed(asset_id) % 2**32)
                    record = make_record(asset_id, str(path), asset, images, masks,
                                         embed(encoders, images, masks, len(asset.parts)),
                                         part_encoder, views)
                    write_library(stage / asset_id, [record], dims, stored, views)
            except Exception as error:  # a bad file is skipped, whatever is wrong with it
                report.skipped.append((path, str(error) or type(error).__name__))
                continue
            known.add(asset_id)
            report.added.append(asset_id)
    if report.added:
        extra = {k: v for k, v in library.info.items() if k == "selection"}
        records = itertools.chain(library.iter_records(),
                                  _staged_records([stage / i for i in report.added]))
        write_library(library_folder, records, dims, stored, views, extra)
    shutil.rmtree(stage, ignore_errors=True)
    return report
