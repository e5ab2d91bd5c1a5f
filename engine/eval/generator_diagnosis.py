"""Why a generator damages good latents: the measurements behind its training recipe.

- latent statistics: per-channel mean and std of the part VAE's latents over the training
  cache, and whether the bundle standardises them for the DiT;
- validation flow loss per σ bucket (the same batches at every σ, conditional branch);
- denoise-from-truth: an object's own latents noised to σ and sampled back with its image;
  a healthy generator at small σ scores almost exactly the VAE's plain reconstruction;
- fragmentation (debris: area in pieces below 2 % of their part) of every decoded result,
  next to the ground truth's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.data.dataset import load_asset
from engine.eval.bench import whole_mesh
from engine.geometry.metrics import compare_meshes
from engine.geometry.pieces import mean_debris
from engine.models.latent_scale import LatentScale
from engine.pipelines.decode import decode_parts
from engine.pipelines.outputs import as_asset


def latent_statistics(latents: list[np.ndarray], scale: LatentScale) -> dict:
    """Per-channel mean/std of raw latents (list of (parts, T, C)) and of what the DiT sees."""
    raw = np.concatenate([x.reshape(-1, x.shape[-1]) for x in latents]).astype(np.float64)
    seen = scale.normalise(torch.from_numpy(raw).float()).double().numpy()
    summary = lambda x: {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(),
                         "overall_std": float(x.std()), "max_abs_mean": float(np.abs(x.mean(0)).max()),
                         "std_range": [float(x.std(0).min()), float(x.std(0).max())]}
    return {"tokens": len(raw), "standardised": not scale.identity, "raw": summary(raw),
            "seen_by_dit": summary(seen)}


@torch.no_grad()
def flow_loss_by_sigma(model, examples, buckets: int = 10, batches: int = 4, batch_size: int = 6,
                       k: int = 3, seed: int = 0) -> list[dict]:
    """Mean conditional flow loss per σ bucket [b/B, (b+1)/B), σ uniform inside the bucket."""
    from engine.training.dit import dit_losses

    model.eval()
    rows = []
    for b in range(buckets):
        rng = np.random.default_rng(seed)  # the same objects, views and noise in every bucket
        torch.manual_seed(seed)
        losses = []
        for _ in range(batches):
            batch = examples.batch(rng, batch_size, k=k)
            sigma = torch.from_numpy(rng.uniform(b / buckets, (b + 1) / buckets, batch_size)).float()
            losses.append(float(dit_losses(model, batch, 0.0, sigma=sigma)["flow"]))
        rows.append({"sigma": [b / buckets, (b + 1) / buckets], "flow_loss": float(np.mean(losses))})
    return rows


def scored(gt, parts, reports: list[dict], samples: int) -> dict:
    """CD/F of the assembled parts against the ground truth, debris per part, empty parts."""
    asset = as_asset(parts)
    return {**compare_meshes(whole_mesh(gt), whole_mesh(asset), samples),
            "debris": mean_debris(parts),
            "empty_parts": int(sum(r["empty"] for r in reports))}


def denoise_from_truth(pipeline, folders: list[Path], true_latents: list[np.ndarray],
                       sigmas: tuple[float, ...], steps: int, guidance: float, top_k: int,
                       samples: int, seed: int = 0, progress: bool = True) -> list[dict]:
    """Per object: the VAE's reconstruction of its own latents and, per σ, the generator's
    result when sampling starts from those latents noised to σ (with its own image)."""
    from engine.eval.generation import reference_image

    rows = []
    for folder, latents in tqdm(list(zip(folders, true_latents)), desc="denoise from truth",
                                disable=not progress):
        gt = load_asset(folder)
        truth = torch.from_numpy(latents.astype(np.float32)).to(pipeline.device)
        meshes = decode_parts(pipeline.vae, truth, pipeline.extract)
        recon = [m.as_part("part", i) for i, m in enumerate(meshes)]
        rows.append({"object": folder.name, "row": "VAE reconstruction",
                     **scored(gt, recon, [m.report() for m in meshes], samples),
                     "gt_debris": mean_debris(gt.parts)})
        image = reference_image(folder)
        for sigma in sigmas:
            generation = pipeline(image, len(latents), steps=steps, guidance=guidance, seed=seed,
                                  top_k=top_k, strength=sigma, start=truth)
            rows.append({"object": folder.name, "row": f"from truth, σ0 = {sigma:g}",
                         **scored(gt, generation.parts, generation.reports, samples)})
    return rows


def mean_rows(rows: list[dict], keys=("chamfer", "fscore", "debris")) -> list[dict]:
    """Mean of `keys` per row name (empty parts summed), in first-seen order."""
    table = []
    for name in dict.fromkeys(r["row"] for r in rows):
        mine = [r for r in rows if r["row"] == name]
        table.append({"row": name, "objects": len(mine),
                      **{key: float(np.mean([r[key] for r in mine])) for key in keys},
                      "empty_parts": int(sum(r.get("empty_parts", 0) for r in mine))})
    return table
