"""Does UniPart's part DiT use what it is conditioned on? The validation flow loss of each
lane (X_gcs, X_ncs) per σ, with the conditions it was trained with and with each one taken
away or swapped. A condition the network uses raises the loss when it is wrong, most at high
σ where the noisy latents say little: the GCS lane should be a completion of X_i (UniPart
§3.3), so with the right segment its high-σ loss should fall far below the no-segment one.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.models.rag_context import per_part_rows
from engine.training.flow_matching import (NUM_TRAIN_TIMESTEPS, flow_target, noisy_latents,
                                           per_row)
from engine.training.unipart import UniPartExamples

VARIANTS = ("as trained", "another object's segment", "every latent but the part's",
            "no segment", "no image")


def segment_variants(segment: torch.Tensor) -> dict[str, torch.Tensor]:
    """The segment context (B, L, d + 1) as trained and with its information broken."""
    flags = segment[..., -1]
    other = segment.clone()
    other[..., -1] = flags.roll(1, 0)  # the flags of the next object's part
    complement = segment.clone()
    complement[..., -1] = 1 - flags
    return {VARIANTS[0]: segment, VARIANTS[1]: other, VARIANTS[2]: complement,
            VARIANTS[3]: torch.zeros_like(segment), VARIANTS[4]: segment}


@torch.no_grad()
def conditioning_losses(pipeline, objects, parts: int = 64, buckets: int = 10,
                        seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """σ bucket centres and, per variant, the flow loss (buckets, 2) of the GCS and NCS lanes
    over the same `parts` validation parts and noise."""
    batch = UniPartExamples(objects, pipeline.scales).part_batch(np.random.default_rng(seed),
                                                                 parts)
    device = pipeline.device
    x0, counts = batch["latents"].to(device), batch["counts"].to(device)
    query = batch["query"].to(device)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    sigmas = (np.arange(buckets) + 0.5) / buckets
    out = {}
    for name, segment in segment_variants(batch["segment"].to(device)).items():
        image = torch.zeros_like(query) if name == VARIANTS[4] else query
        context = per_part_rows(torch.cat([image, pipeline.segment(segment)], dim=1), counts)
        losses = []
        for sigma in sigmas:
            rows = per_row(torch.full((parts,), float(sigma), device=device), counts)
            v = pipeline.part(noisy_latents(x0, noise, rows), rows * NUM_TRAIN_TIMESTEPS,
                              context, counts)
            error = ((v.float() - flow_target(x0, noise).float()) ** 2).mean(dim=(1, 2))
            losses.append([error[0::2].mean().item(), error[1::2].mean().item()])
        out[name] = np.array(losses)
    return sigmas, out


def markdown(sigmas: np.ndarray, losses: dict[str, np.ndarray]) -> str:
    """One row per variant, `GCS / NCS` per σ bucket."""
    width = 0.5 / len(sigmas)
    head = " | ".join(f"σ {s - width:.1f}–{s + width:.1f}" for s in sigmas)
    lines = [f"| conditions | {head} |", "| --- |" + " --- |" * len(sigmas)]
    for name, table in losses.items():
        lines.append(f"| {name} | " + " | ".join(f"{g:.2f} / {n:.2f}" for g, n in table) + " |")
    return "\n".join(lines)
