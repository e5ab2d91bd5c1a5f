"""The reference flow-matching convention the dual-lane DiT was trained under:

    x_σ = (1 - σ)·x0 + σ·ε,   the model predicts v = x0 - ε,   timestep = σ·1000

σ is logit-normal (sigmoid of a standard normal) and drawn once per OBJECT, so all parts of
an object share a noise level (PartRAG §3.4)."""

from __future__ import annotations

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000


def logit_normal_sigmas(rng: np.random.Generator, objects: int, mean: float = 0.0,
                        std: float = 1.0) -> np.ndarray:
    """(objects,) σ = sigmoid(N(mean, std²)); a negative mean spends training on low σ."""
    return 1.0 / (1.0 + np.exp(-(mean + std * rng.standard_normal(objects))))


def per_row(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """One value per object -> one per part row."""
    return values.repeat_interleave(counts.to(values.device))


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigma_rows: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 - σ)·x0 + σ·ε with σ (rows,) broadcast over tokens and channels."""
    s = sigma_rows.to(x0.dtype)[:, None, None]
    return (1.0 - s) * x0 + s * noise


def flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the model regresses: v = x0 - ε (the sampler steps x += (σ_i - σ_{i+1})·v)."""
    return x0 - noise
