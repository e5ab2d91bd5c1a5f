"""Filling a part library: from a rendered dataset (spherical k-means medoids of the
candidates' object embeddings, PartRAG §4.1) or from external files (rendered here)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.data.asset import PartAsset
from engine.data.dataset import load_asset
from engine.data.vae_data import object_seed, split_names
from engine.retrieval.compact import encode_mask, encode_rgba, thumbnail
from engine.retrieval.encoders import ImageEncoder
from engine.retrieval.importers import import_asset
from engine.retrieval.library import (DEFAULT_SIZE, THUMBNAIL, AssetRecord, LibraryError,
                                      PartLibrary, write_library)
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


def build_library(data: Path, out: Path, encoders: list[ImageEncoder], part_encoder: PartEncoder,
                  size: int = DEFAULT_SIZE, split: str = "train", limit: int | None = None,
                  seed: int = 0, progress: bool = True,
                  stored_views: int = STORED_VIEWS) -> dict:
    """Embed every candidate of the split (all its views), keep `size` medoids of spherical
    k-means over the first encoder's object embeddings, and write them as a library with
    the first `stored_views` views of each. Returns a summary."""
    started = time.perf_counter()
    if stored_views < 0:
        raise LibraryError(f"stored views must be 0 or more, got {stored_views}")
    names = split_names(data, split)[:limit]
    if size > len(names):
        raise LibraryError(f"cannot choose {size} assets among {len(names)} candidates in "
                           f"{data} {split}")
    candidates = []
    for name in tqdm(names, desc="embedding candidates", unit="obj", disable=not progress):
        folder = Path(data) / split / name
        meta = json.loads((folder / "meta.json").read_text())
        images, masks = read_views(folder)
        candidates.append(embed(encoders, images, masks, len(meta["labels"])))
    selector = encoders[0].key
    features = np.stack([objects[selector] for objects, _ in candidates])
    chosen = spherical_kmeans_medoids(features, size, seed=seed)
    records = []
    for i in tqdm(chosen, desc="writing exemplars", unit="obj", disable=not progress):
        folder = Path(data) / split / names[i]
        images, masks = read_views(folder)
        records.append(make_record(names[i], f"dataset:{split}/{names[i]}", load_asset(folder),
                                   images, masks, candidates[i], part_encoder, stored_views))
    summary = {"candidates": len(names), "assets": len(records), "selected_with": selector,
               "coverage": coverage(features, chosen),
               "built_from": f"{data} {split}", "seconds": 0.0}
    selection = {k: summary[k] for k in ("candidates", "selected_with", "coverage", "built_from")}
    write_library(out, records, {e.key: e.token_dim for e in encoders}, part_encoder.describe(),
                  stored_views, {"selection": selection})
    summary["seconds"] = time.perf_counter() - started
    return summary


def render_asset(renderer, asset: PartAsset,
                 seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGBA views and part masks of an asset, framed as the dataset's are."""
    from engine.render.camera import orbit_views

    radius = max(float(np.linalg.norm(p.object_vertices(), axis=1).max()) for p in asset.parts)
    views = renderer.render(asset, orbit_views(VIEWS, seed=seed, radius=radius))
    return [v.rgba for v in views], [v.mask for v in views]


def add_assets(library_folder: Path, files: list[Path], encoders: list[ImageEncoder],
               part_encoder: PartEncoder, category: str | None = None,
               labels: dict[str, str] | None = None) -> list[str]:
    """Import files (GLB/glTF/OBJ), render and embed them, and rewrite the library with them
    appended. Returns the new asset ids."""
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

    imported = []
    for path in map(Path, files):
        asset = import_asset(path, category or path.stem, labels)
        asset_id = f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
        if asset_id in library.ids or asset_id in [i for i, _, _ in imported]:
            raise LibraryError(f"{path} is already in the library as {asset_id}")
        imported.append((asset_id, path, asset))
    records = library.records()
    with Renderer() as renderer:
        for asset_id, path, asset in imported:
            images, masks = render_asset(renderer, asset, object_seed(asset_id) % 2**32)
            records.append(make_record(asset_id, str(path), asset, images, masks,
                                       embed(encoders, images, masks, len(asset.parts)),
                                       part_encoder, library.info["stored_views"]))
    added = [asset_id for asset_id, _, _ in imported]
    extra = {k: v for k, v in library.info.items() if k == "selection"}
    write_library(library_folder, records, {e.key: e.token_dim for e in encoders},
                  stored, library.info["stored_views"], extra)
    return added
