"""DiT training data: a latent cache and the batches drawn from it.

Encoding parts with the VAE and views with the image encoder is the slow part, so it runs
once per object into `<cache>/<split>/<name>.npz` (atomically; a rerun skips finished
files). Per object:
    latents (parts, T, Cz)   each part's posterior mean, encoded in the OBJECT frame
    tokens (V, L, Cc)        encoder tokens of every reference view, framed as at inference
    pooled (V, D)            the encoder's pooled vector per view (retrieval keys)
    cover (V, parts, L)      each part's coverage of the token grid (HCR part features)
    labels (parts,)          part labels
The exemplar bank (what retrieval returns) is built from the training split; each training
view retrieves its top-k from that bank with its own object excluded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from engine.data.cache import check_options, object_files, save_npz
from engine.data.dataset import load_asset
from engine.data.vae_data import object_seed, split_names
from engine.models.latent_scale import LatentScale
from engine.training.flow_matching import logit_normal_sigmas
from engine.retrieval import conditioning
from engine.retrieval.exemplars import ExemplarBank, exemplar_latents, spread_subset
from engine.render.image_prep import frame_object

CACHE_VERSION = 1


@dataclass(frozen=True)
class BankOptions:
    """How retrieved exemplars are summarised (stored with the bundle's rag/ weights)."""
    encoder: str = conditioning.DEFAULT_ENCODER
    image_grid: int = 2  # exemplar image tokens: its view pooled to grid x grid
    tokens_per_part: int = 4
    max_parts: int = 8
    size: int = 512  # assets in the bank (spread over the embedding space)


def read_object_views(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGBA views and part-index masks of a dataset object, framed like query images."""
    from PIL import Image

    meta = json.loads((folder / "meta.json").read_text())
    views, masks = [], []
    for view in meta["views"]:
        rgba = np.asarray(Image.open(folder / view["image"]).convert("RGBA"))
        mask = np.asarray(Image.open(folder / view["mask"]))
        framed, framed_mask = frame_object(rgba, mask)
        views.append(framed)
        masks.append(framed_mask)
    return views, masks


@torch.no_grad()
def cache_object(folder: Path, encoder, parts) -> dict[str, np.ndarray]:
    asset = load_asset(folder)
    latents = parts.encode(asset, object_seed(folder.name) % (2**31))
    views, masks = read_object_views(folder)
    encoded = conditioning.encode_images(encoder, views)
    n = len(asset.parts)
    cover = np.stack([conditioning.mask_coverage(m[None] == np.arange(n)[:, None, None],
                                                   encoded.grid).numpy() for m in masks])
    return {"latents": latents.astype(np.float16),
            "tokens": encoded.tokens.numpy().astype(np.float16),
            "pooled": encoded.pooled.numpy().astype(np.float32),
            "cover": cover.astype(np.float16), "grid": np.array(encoded.grid),
            "labels": np.array(asset.labels)}


def build_latent_cache(data: Path, cache: Path, split: str, vae_folder: Path,
                       encoder_spec: str, device: str = "cpu", limit: int | None = None,
                       progress: bool = True) -> list[Path]:
    """Cache the split's objects (the first `limit`); returns their paths in manifest order."""
    data, cache = Path(data), Path(cache)
    check_options(cache, {"version": CACHE_VERSION, "vae": str(Path(vae_folder).resolve()),
                          "encoder": encoder_spec})
    paths, todo = object_files(cache, split, split_names(data, split)[:limit])
    if todo:
        encoder = conditioning.load_encoder(encoder_spec, device)
        parts = conditioning.part_encoder(vae_folder, device)
        for name, path in tqdm(todo, desc=f"latent cache {split}", unit="obj",
                               disable=not progress):
            save_npz(path, cache_object(data / split / name, encoder, parts))
    return paths


@dataclass
class CachedObject:
    name: str
    latents: np.ndarray
    tokens: np.ndarray
    pooled: np.ndarray
    cover: np.ndarray
    grid: tuple[int, int]
    labels: list[str]


def load_cached(paths: list[Path]) -> list[CachedObject]:
    objects = []
    for path in paths:
        with np.load(path) as a:
            objects.append(CachedObject(Path(path).stem, a["latents"], a["tokens"], a["pooled"],
                                        a["cover"], tuple(int(g) for g in a["grid"]),
                                        [str(x) for x in a["labels"]]))
    if not objects:
        raise ValueError("no cached objects")
    return objects


def object_key(obj: CachedObject) -> np.ndarray:
    return conditioning.object_embedding(torch.from_numpy(obj.pooled).mean(0)).numpy()


def build_bank(objects: list[CachedObject], options: BankOptions) -> ExemplarBank:
    """The exemplar bank over `options.size` training objects spread over the key space."""
    keys = np.stack([object_key(o) for o in objects])
    chosen = spread_subset(keys, options.size)
    picked = [objects[i] for i in chosen]
    image_tokens = torch.cat([
        conditioning.pooled_tokens(torch.from_numpy(o.tokens[:1].astype(np.float32)), o.grid,
                                     options.image_grid) for o in picked]).numpy()
    cz = picked[0].latents.shape[-1]
    means = np.zeros((len(picked), options.max_parts, cz), np.float32)
    labels = np.full((len(picked), options.max_parts), "", dtype=object)
    for row, o in enumerate(picked):
        n = min(len(o.labels), options.max_parts)
        means[row, :n] = o.latents[:n].astype(np.float32).mean(1)
        labels[row, :n] = o.labels[:n]
    latents = np.stack([exemplar_latents(o.latents[:options.max_parts], options.tokens_per_part,
                                         options.max_parts) for o in picked])
    return ExemplarBank(np.array([o.name for o in picked]), keys[chosen],
                        image_tokens.astype(np.float16), latents.astype(np.float16), means,
                        np.array([min(len(o.labels), options.max_parts) for o in picked]),
                        labels.astype(str))


@dataclass(frozen=True)
class PathOptions:
    """Where training paths start. From-noise paths take σ = sigmoid(N(mean, std²)) per
    object. A `bridge_fraction` of the objects of batches with k ≥ 1 instead run the path
    the product samples: from their top retrieved exemplar's part latents noised to a start
    σ0 uniform in `bridge_strengths`, towards their own latents (σ uniform in (0, σ0))."""
    sigma_mean: float = 0.0
    sigma_std: float = 1.0
    bridge_fraction: float = 0.0
    bridge_strengths: tuple[float, float] = (0.3, 0.7)


def start_parts(exemplars: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Start latents (n, T, C) for an object of n parts from retrieved assets' part latents:
    assets with exactly n parts first (as the pipeline's start_latents), parts cycled to n,
    then matched to the target's parts (Hungarian on mean latents) so every path is short."""
    n = len(target)
    ordered = sorted(exemplars, key=lambda parts: len(parts) != n)
    pool = np.concatenate(ordered)[np.arange(n) % sum(len(p) for p in ordered)]
    cost = np.linalg.norm(pool.mean(1)[:, None] - target.mean(1)[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    start = np.empty_like(pool)
    start[cols] = pool[rows]
    return start


class DiTExamples:
    """Batches of objects with their retrieved exemplars; a pure function of the rng.
    `library` holds the full part latents of the bank's assets (name -> (parts, T, C)) for
    bridge paths."""

    def __init__(self, objects: list[CachedObject], bank: ExemplarBank, max_k: int,
                 label_ids: dict[str, int], scale: LatentScale = LatentScale(),
                 paths: PathOptions = PathOptions(),
                 library: dict[str, np.ndarray] | None = None):
        self.objects, self.bank, self.max_k = objects, bank, max_k
        self.label_ids, self.scale, self.paths = label_ids, scale, paths
        self.library = library or {}
        if paths.bridge_fraction and not self.library:
            raise ValueError("bridge paths need the bank assets' part latents (library)")
        # Neighbours of every (object, view), computed once.
        self.hits = [[bank.search(conditioning.object_embedding(torch.from_numpy(p)).numpy(),
                                  max_k, exclude=o.name) for p in o.pooled] for o in objects]

    def batch(self, rng: np.random.Generator, size: int, k: int | None = None) -> dict:
        """`size` objects, one random view each, and top-k exemplars (k random in 0..max_k
        per batch unless given). Keys: latents (rows, T, Cz), counts (B,), query (B, L, Cc),
        exemplar_images (B, k, G, Cc), exemplar_latents (B, k, T_r, Cz), drop (B,) condition
        dropout draws, sigma (B,) noise levels, bridge (B,) bool with start (rows, T, Cz) and
        start_sigma (B,) for bridge paths (PathOptions), and the HCR inputs (cover, visible,
        exists, labels, shape, instance)."""
        picks = rng.integers(len(self.objects), size=size)
        views = [int(rng.integers(len(self.objects[i].tokens))) for i in picks]
        k = int(rng.integers(self.max_k + 1)) if k is None else k
        latents, images, exemplar_lat = [], [], []
        for i, v in zip(picks, views):
            latents.append(torch.from_numpy(self.objects[i].latents.astype(np.float32)))
            hits = self.hits[i][v][:k]
            image, lat = self.bank.context(hits)
            images.append(image)
            exemplar_lat.append(lat)
        objs = [self.objects[i] for i in picks]
        n_max = max(len(o.labels) for o in objs)
        cz = objs[0].latents.shape[-1]
        grid_l = objs[0].tokens.shape[1]
        cover = torch.zeros(size, n_max, grid_l)
        exists = torch.zeros(size, n_max, dtype=torch.bool)
        labels = torch.zeros(size, n_max, dtype=torch.long)
        shape = torch.zeros(size, n_max, cz)
        for b, (o, v) in enumerate(zip(objs, views)):
            n = len(o.labels)
            cover[b, :n] = torch.from_numpy(o.cover[v].astype(np.float32))
            exists[b, :n] = True
            labels[b, :n] = torch.tensor([self.label_ids.get(x, 0) for x in o.labels])
            shape[b, :n] = torch.from_numpy(o.latents.astype(np.float32).mean(1))
        paths = self.paths
        sigma = logit_normal_sigmas(rng, size, paths.sigma_mean, paths.sigma_std)
        bridge = (rng.random(size) < paths.bridge_fraction) & (k > 0)
        start_sigma = rng.uniform(*paths.bridge_strengths, size)
        sigma = np.where(bridge, rng.random(size) * start_sigma, sigma)
        start = [start_parts([self.library[h.asset_id] for h in self.hits[i][v][:k]],
                             o.latents).astype(np.float32) if b else np.zeros_like(o.latents, np.float32)
                 for i, v, o, b in zip(picks, views, objs, bridge)]
        return {"latents": self.scale.normalise(torch.cat(latents)),
                "sigma": torch.from_numpy(sigma).float(), "bridge": torch.from_numpy(bridge),
                "start": self.scale.normalise(torch.from_numpy(np.concatenate(start))),
                "start_sigma": torch.from_numpy(start_sigma).float(),
                "counts": torch.tensor([len(o.labels) for o in objs]),
                "query": torch.stack([torch.from_numpy(o.tokens[v].astype(np.float32))
                                      for o, v in zip(objs, views)]),
                "exemplar_images": torch.stack(images),
                "exemplar_latents": self.scale.normalise(torch.stack(exemplar_lat)),
                "drop": torch.from_numpy(rng.random(size)),
                "cover": cover, "visible": exists & (cover.sum(-1) > 0), "exists": exists,
                "labels": labels, "shape": shape, "instance": torch.from_numpy(picks.astype(np.int64))}


def label_vocabulary(objects: list[CachedObject]) -> dict[str, int]:
    return {label: i for i, label in enumerate(sorted({x for o in objects for x in o.labels}))}
