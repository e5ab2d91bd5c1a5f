"""Per-channel standardisation of part-VAE latents for the DiT.

Diffusion trains best on unit-variance latents: the part VAE's posterior means have a
per-channel std of 1.6-2.4 and means up to ±1, so a generator trained on them raw spends its
σ schedule on the wrong signal-to-noise ratios. The statistics belong to the VAE's latent
space, so they live in its config.json under diffusers' keys `latents_mean` / `latents_std`
(one value per channel); a VAE without them (the public PartCrafter one) is used unscaled.
"""

from __future__ import annotations

import numpy as np
import torch

MEAN_KEY, STD_KEY = "latents_mean", "latents_std"


class LatentScale:
    """z = (x - mean) / std for the DiT, x = z·std + mean for the decoder; identity without
    statistics."""

    def __init__(self, mean: list[float] | None = None, std: list[float] | None = None):
        if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
            raise ValueError("latents_mean and latents_std go together, one value per channel")
        if std is not None and min(std) <= 0:
            raise ValueError(f"latents_std must be positive, got {min(std)}")
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)

    @classmethod
    def of(cls, vae) -> LatentScale:
        """The scale declared in a VecSetVAE's config (identity when it declares none)."""
        return cls(vae.extra_config.get(MEAN_KEY), vae.extra_config.get(STD_KEY))

    @classmethod
    def fit(cls, latents: np.ndarray) -> LatentScale:
        """Statistics over (..., C) latents, one value per channel."""
        flat = np.asarray(latents, dtype=np.float64).reshape(-1, latents.shape[-1])
        return cls(flat.mean(0).tolist(), np.maximum(flat.std(0), 1e-6).tolist())

    @property
    def identity(self) -> bool:
        return self.mean is None

    def config(self) -> dict:
        """Keys to write into the VAE's config.json (none for the identity)."""
        if self.identity:
            return {}
        return {MEAN_KEY: self.mean.tolist(), STD_KEY: self.std.tolist()}

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return z
        return z * self.std.to(z.device, z.dtype) + self.mean.to(z.device, z.dtype)
