"""Reconstruction figures of a trained part VAE (and Geom-Seg VAE) on a dataset split.

Part VAE: every part of a test object is encoded on its own in the object frame, decoded,
extracted with the hierarchical extractor, and the parts are assembled and compared with the
ground-truth object (paper protocol: CD and F-Score@0.1 on 204,800 surface samples).
Geom-Seg VAE: whole objects with part codes; per-latent part assignment accuracy and mIoU of
the latent segmentation (FPS prompts + NMS), and the geometry of the whole-object latents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.data.asset import Part, PartAsset, mesh_id_name
from engine.data.dataset import load_asset, read_manifest, surface_samples
from engine.eval.bench import whole_mesh
from engine.geometry.metrics import PAPER_SAMPLES, compare_meshes, sample_surface
from engine.geometry.extraction import PART_LIPSCHITZ, extract_hierarchical, extract_part
from engine.geometry.pieces import mean_debris
from engine.models.vecset_vae import VecSetVAE



@dataclass
class ExtractOptions:
    resolution: int = 256
    coarse_resolution: int = 32
    lipschitz: float = PART_LIPSCHITZ


@dataclass
class ObjectResult:
    name: str
    category: str
    parts: int
    chamfer: float  # nan when nothing was extracted
    fscore: float
    empty_parts: int  # parts whose decoded field has no surface
    seconds: float
    debris: float  # mean over decoded parts: area share in pieces below 2 % of the part
    gt_debris: float  # the same figure for the ground-truth parts


def extract(vae: VecSetVAE, latents: torch.Tensor, options: ExtractOptions,
            device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of the zero level set of one shape's decoded field (negated logits)."""
    mesh = extract_part(vae.field(latents), options.resolution, options.coarse_resolution,
                        options.lipschitz, device)
    return mesh.vertices, mesh.faces


@torch.no_grad()
def reconstruct_parts(vae: VecSetVAE, asset: PartAsset, options: ExtractOptions,
                      seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each part encoded alone in the object frame (posterior mean), decoded and extracted;
    meshes in the object frame, empty arrays where the field has no surface."""
    tokens, count = vae.encode_tokens, vae.encode_points
    device = next(vae.parameters()).device
    meshes = []
    for k, part in enumerate(asset.parts):
        rng = np.random.default_rng([seed, k])
        s = sample_surface(part.object_vertices(), part.faces, count, rng)
        points = torch.from_numpy(np.concatenate([s.points, s.normals], 1))[None].to(device)
        generator = torch.Generator().manual_seed(seed * 1000 + k)
        latents = vae.encode(points, tokens, generator=generator).mean
        meshes.append(extract(vae, latents, options, device))
    return meshes


@torch.no_grad()
def extraction_timings(vae: VecSetVAE, folders: list[Path], parts: int,
                       resolutions: tuple[int, ...], options: ExtractOptions,
                       progress: bool = True) -> list[dict]:
    """Dense vs hierarchical extraction of the first `parts` parts of `folders` at each final
    resolution: seconds, decoder queries and the Chamfer distance between the two meshes."""
    from engine.geometry.extraction import extract_dense

    tokens, count = vae.encode_tokens, vae.encode_points
    device = next(vae.parameters()).device
    chosen = [(folder, k) for folder in folders for k in range(len(load_asset(folder).parts))]
    rows = []
    for folder, k in tqdm(chosen[:parts], desc="extraction timings", disable=not progress):
        part = load_asset(folder).parts[k]
        s = sample_surface(part.object_vertices(), part.faces, count, np.random.default_rng(k))
        points = torch.from_numpy(np.concatenate([s.points, s.normals], 1))[None].to(device)
        generator = torch.Generator().manual_seed(k)
        field = vae.field(vae.encode(points, tokens, generator=generator).mean)
        for resolution in resolutions:
            started = time.perf_counter()
            dense = extract_dense(field, resolution, device=device)
            dense_seconds = time.perf_counter() - started
            started = time.perf_counter()
            near = extract_hierarchical(field, resolution, options.coarse_resolution,
                                        device=device, lipschitz=options.lipschitz)
            near_seconds = time.perf_counter() - started
            chamfer = (compare_meshes((dense.vertices, dense.faces), (near.vertices, near.faces),
                                      100_000)["chamfer"] if len(dense.faces) and len(near.faces)
                       else float("nan"))
            rows.append({"part": f"{folder.name}/{k} {part.label}", "resolution": resolution,
                         "dense_seconds": dense_seconds, "dense_queries": dense.queried_points,
                         "hierarchical_seconds": near_seconds,
                         "hierarchical_queries": near.queried_points,
                         "chamfer_dense_vs_hierarchical": chamfer})
    return rows


def as_asset(source: PartAsset, meshes: list[tuple[np.ndarray, np.ndarray]]) -> PartAsset:
    """Reconstructed part meshes (object frame) as a PartAsset like `source` (local frames,
    translations), dropping empty ones: for rendering and whole_mesh."""
    parts = []
    for k, ((v, f), original) in enumerate(zip(meshes, source.parts)):
        if len(f) == 0:
            continue
        centre = (v.min(0) + v.max(0)) / 2
        transform = np.eye(4)
        transform[:3, 3] = centre
        parts.append(Part((v - centre).astype(np.float32), f.astype(np.int32), transform,
                          original.label, k, mesh_id_name(k), original.material))
    return PartAsset(source.category, source.seed, parts, source.materials, source.params)


def object_folders(data: Path, split: str, limit: int | None) -> list[Path]:
    manifest = read_manifest(data)
    records = manifest["splits"][split][:limit]
    return [Path(data) / split / r["name"] for r in records]


def evaluate_part_vae(vae: VecSetVAE, folders: list[Path], options: ExtractOptions,
                      samples: int = PAPER_SAMPLES, keep: int = 0,
                      progress: bool = True) -> tuple[list[ObjectResult], list[tuple]]:
    """Per-object results, and (GT asset, reconstruction) for the first `keep` objects."""
    results, kept = [], []
    for folder in tqdm(folders, desc="part VAE reconstruction", disable=not progress):
        started = time.perf_counter()
        asset = load_asset(folder)
        recon = as_asset(asset, reconstruct_parts(vae, asset, options))
        empty = len(asset.parts) - len(recon.parts)
        metrics = ({"chamfer": float("nan"), "fscore": float("nan")} if not recon.parts
                   else compare_meshes(whole_mesh(asset), whole_mesh(recon), samples))
        results.append(ObjectResult(folder.name, asset.category, len(asset.parts),
                                    metrics["chamfer"], metrics["fscore"], empty,
                                    time.perf_counter() - started,
                                    mean_debris(recon.parts), mean_debris(asset.parts)))
        if len(kept) < keep and recon.parts:
            kept.append((asset, recon, results[-1]))
    return results, kept


def summarise(results: list[ObjectResult]) -> dict:
    done = [r for r in results if np.isfinite(r.chamfer)]
    return {"objects": len(results), "failed": len(results) - len(done),
            "chamfer": float(np.mean([r.chamfer for r in done])) if done else float("nan"),
            "fscore": float(np.mean([r.fscore for r in done])) if done else float("nan"),
            "empty_parts": sum(r.empty_parts for r in results),
            "debris": float(np.mean([r.debris for r in done])) if done else float("nan"),
            "gt_debris": float(np.mean([r.gt_debris for r in results])),
            "seconds_per_object": float(np.mean([r.seconds for r in results]))}


@torch.no_grad()
def evaluate_geomseg(model, folders: list[Path], options: ExtractOptions,
                     samples: int = PAPER_SAMPLES, progress: bool = True) -> dict:
    """Whole objects through the Geom-Seg VAE: per-latent part assignment accuracy and mIoU
    of `segment_latents` against the anchors' GT parts, and CD / F of the decoded geometry."""
    from engine.models.geomseg_vae import (latent_assignment_accuracy, part_codes,
                                           segmentation_miou)

    count = model.vae.encode_points
    device = next(model.parameters()).device
    rows = []
    for i, folder in enumerate(tqdm(folders, desc="Geom-Seg VAE", disable=not progress)):
        asset = load_asset(folder)
        s = surface_samples(asset, count, seed=i)
        labels = torch.from_numpy(s["part"].astype(np.int64))[None]
        generator = torch.Generator().manual_seed(i)
        codes = part_codes(labels, generator)
        points = torch.cat([torch.from_numpy(s["points"]), torch.from_numpy(s["normals"]),
                            codes[0, :, None]], 1)[None].to(device)
        posterior, query_index = model.encode(points, generator=generator)
        latents = posterior.mean
        gt = labels[0, query_index[0].cpu()].numpy()
        pred = model.segment_latents(latents[0]).cpu().numpy()
        mesh = extract(model.vae, latents, options, device)
        geometry = ({"chamfer": float("nan"), "fscore": float("nan")} if not len(mesh[1])
                    else compare_meshes(whole_mesh(asset), mesh, samples))
        rows.append({"accuracy": latent_assignment_accuracy(pred, gt),
                     "miou": segmentation_miou(pred, gt), **geometry})
    return {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}


def write_comparison_sheet(kept: list[tuple], path: Path, tile: int = 256) -> Path:
    """GT and reconstruction side by side, part-coloured, one pair per object."""
    from engine.render import Renderer, contact_sheet
    from engine.render.camera import sheet_camera

    camera = sheet_camera(tile)
    images, captions = [], []
    with Renderer() as renderer:
        for asset, recon, result in kept:
            images += [renderer.render(a, [camera], preview=True)[0].preview for a in (asset, recon)]
            captions += [f"{result.name[:24]} GT",
                         f"VAE CD {result.chamfer:.3f} F {result.fscore:.3f}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, path, captions, columns=4, tile=tile)
    return path
