"""UniPart training data (UniPart §3.2-3.3): per object, the whole-object Geom-Seg latent and
each part's latents in two spaces, cached once into `<cache>/<split>/<name>.npz`.

    z (L, d)                 the Geom-Seg VAE's posterior mean of the whole object (points with
                             their part codes, as it was trained): what the whole-level DiT makes
    z_parts (L,)             the part each latent's anchor point lies on: the latent
                             segmentation's ground truth, and X_i = the latents of part i
    gcs (parts, L, d)        each part alone in the object frame (global coordinate space)
    ncs (parts, L, d)        each part alone in its normalised canonical space: centred on its
                             bounding box and scaled uniformly so its longest side is 2 (the
                             canonical frame of whole objects, DESIGN.md), so a thin leg gets
                             the VAE's full resolution
    boxes (parts, 4)         the centre and half longest side that map NCS back to the object

Part latents come from the part VAE (the space PartRAG generates in: same L and d as the
Geom-Seg VAE, and trained on parts, where the Geom-Seg decoder was tuned on whole objects).
The image side is the DiT cache's (dit_data.py): encoder tokens of every view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.data.cache import check_options, object_files, save_npz
from engine.data.dataset import load_asset
from engine.data.vae_data import object_seed, split_names
from engine.geometry.metrics import sample_surface
from engine.models.geomseg_vae import GeomSegVAE
from engine.retrieval.shape import encode_meshes

CACHE_VERSION = 1


def ncs_frame(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """A part's normalised canonical space: (centre (3,), half its longest side)."""
    lo, hi = vertices.min(0), vertices.max(0)
    return (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6)


@torch.no_grad()
def whole_latent(geomseg: GeomSegVAE, meshes: list[tuple[np.ndarray, np.ndarray]],
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The Geom-Seg latent (L, d) of an object's part meshes and the part of each latent's
    anchor (L,): area-weighted surface points, part codes evenly spaced in [-1, 1] in part
    order, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    vae = geomseg.vae
    areas = np.array([0.5 * np.linalg.norm(np.cross(v[f][:, 1] - v[f][:, 0],
                                                    v[f][:, 2] - v[f][:, 0]), axis=1).sum()
                      for v, f in meshes])
    counts = rng.multinomial(vae.encode_points, areas / areas.sum())
    clouds, labels = [], []
    codes = np.linspace(-1.0, 1.0, len(meshes)) if len(meshes) > 1 else np.zeros(1)
    for k, ((vertices, faces), count) in enumerate(zip(meshes, counts)):
        if count == 0:
            continue
        s = sample_surface(vertices, faces, int(count), rng)
        clouds.append(np.concatenate([s.points, s.normals, np.full((count, 1), codes[k])], 1))
        labels.append(np.full(count, k))
    points = torch.from_numpy(np.concatenate(clouds).astype(np.float32))[None]
    generator = torch.Generator().manual_seed(seed)
    query = geomseg.sample_query_index(points, vae.encode_tokens, generator)
    posterior, query = geomseg.encode(points, query)
    return posterior.mean[0].numpy(), np.concatenate(labels)[query[0].numpy()]


def cache_object(folder: Path, geomseg: GeomSegVAE, part_vae) -> dict[str, np.ndarray]:
    asset = load_asset(folder)
    seed = object_seed(folder.name) % (2**31)
    meshes = [(p.object_vertices(), p.faces) for p in asset.parts]
    z, z_parts = whole_latent(geomseg, meshes, seed)
    frames = [ncs_frame(v) for v, _ in meshes]
    normalised = [((v - centre) / half, f) for (v, f), (centre, half) in zip(meshes, frames)]
    return {"z": z.astype(np.float16), "z_parts": z_parts.astype(np.int16),
            "gcs": encode_meshes(part_vae, meshes, seed).astype(np.float16),
            "ncs": encode_meshes(part_vae, normalised, seed).astype(np.float16),
            "boxes": np.array([[*centre, half] for centre, half in frames], np.float32)}


def build_unipart_cache(data: Path, cache: Path, split: str, geomseg_folder: Path,
                        part_vae_folder: Path, limit: int | None = None,
                        progress: bool = True) -> list[Path]:
    """Cache the split's objects (the first `limit`; resumable); their paths in order."""
    from engine.models.vecset_vae import VecSetVAE

    data, cache = Path(data), Path(cache)
    check_options(cache, {"version": CACHE_VERSION,
                          "geomseg": str(Path(geomseg_folder).resolve()),
                          "part_vae": str(Path(part_vae_folder).resolve())})
    paths, todo = object_files(cache, split, split_names(data, split)[:limit])
    if todo:
        geomseg = GeomSegVAE.from_pretrained(geomseg_folder).float()
        part_vae = VecSetVAE.from_pretrained(part_vae_folder).float().eval()
        sizes = {(v.encode_tokens, v.config.latent_channels) for v in (geomseg.vae, part_vae)}
        if len(sizes) != 1:
            raise ValueError(f"the Geom-Seg VAE and the part VAE must share L and d (UniPart's "
                             f"bundle has one VAE config for both), got {sorted(sizes)}")
        for name, path in tqdm(todo, desc=f"UniPart cache {split}", unit="obj",
                               disable=not progress):
            save_npz(path, cache_object(data / split / name, geomseg, part_vae))
    return paths


@dataclass
class UniPartObject:
    name: str
    z: np.ndarray  # (L, d)
    z_parts: np.ndarray  # (L,)
    gcs: np.ndarray  # (parts, L, d)
    ncs: np.ndarray  # (parts, L, d)
    boxes: np.ndarray  # (parts, 4)
    tokens: np.ndarray  # (views, L_img, Cc) from the DiT cache

    @property
    def num_parts(self) -> int:
        return len(self.gcs)


def load_unipart(paths: list[Path], dit_paths: list[Path]) -> list[UniPartObject]:
    """Cached objects with their image tokens (the DiT cache file of the same object)."""
    objects = []
    for path, dit_path in zip(paths, dit_paths):
        if Path(path).stem != Path(dit_path).stem:
            raise ValueError(f"{path} and {dit_path} are not the same object")
        with np.load(path) as a, np.load(dit_path) as d:
            objects.append(UniPartObject(Path(path).stem, a["z"], a["z_parts"], a["gcs"],
                                         a["ncs"], a["boxes"], d["tokens"]))
    if not objects:
        raise ValueError("no cached objects")
    return objects


def cached_split(data: Path, split: str, geomseg_folder: Path, part_vae_folder: Path,
                 cache: Path, dit_cache: Path, limit: int | None = None,
                 progress: bool = True) -> list[UniPartObject]:
    """A split's objects with both caches built first (image tokens in the DiT cache, shared
    with PartRAG's generator; latents in the UniPart cache)."""
    from engine.retrieval import conditioning
    from engine.training import dit_data

    dit_paths = dit_data.build_latent_cache(data, dit_cache, split, part_vae_folder,
                                            conditioning.DEFAULT_ENCODER, limit=limit,
                                            progress=progress)
    paths = build_unipart_cache(data, cache, split, geomseg_folder, part_vae_folder, limit,
                                progress)
    return load_unipart(paths, dit_paths)
