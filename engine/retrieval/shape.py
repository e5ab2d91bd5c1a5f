"""The 3D side of retrieval: VecSet VAE latents of every part, encoded in the OBJECT frame
as the VAE was trained (engine/training/vae.py), and their mean over tokens (HCR's y_i)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.data.asset import PartAsset
from engine.geometry.metrics import sample_surface
from engine.models.vecset_vae import VecSetVAE


class PartEncoder:
    """Part meshes -> posterior-mean latents (parts, T, C), deterministic for a seed."""

    def __init__(self, vae_folder: str | Path, device: str | torch.device = "cpu"):
        self.folder = Path(vae_folder)
        self.vae = VecSetVAE.from_pretrained(self.folder).float().to(device)
        self.points, self.tokens = self.vae.encode_points, self.vae.encode_tokens
        self.channels = self.vae.config.latent_channels
        self.device = torch.device(device)

    def describe(self) -> dict:
        """What a library or feature cache records about the latents it holds."""
        return {"vae": str(self.folder), "tokens": self.tokens, "points": self.points,
                "channels": self.channels}

    def encode(self, asset: PartAsset, seed: int) -> np.ndarray:
        """(parts, tokens, channels) float32 posterior means, one batch for all parts."""
        return encode_meshes(self.vae, [(p.object_vertices(), p.faces) for p in asset.parts],
                             seed)


@torch.no_grad()
def encode_meshes(vae: VecSetVAE, meshes: list[tuple[np.ndarray, np.ndarray]],
                  seed: int) -> np.ndarray:
    """Object-frame part meshes (vertices, faces) -> (parts, tokens, channels) float32
    posterior means, one batch for all parts, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    clouds = []
    for vertices, faces in meshes:
        s = sample_surface(vertices, faces, vae.encode_points, rng)
        clouds.append(np.concatenate([s.points, s.normals], 1))
    device = next(vae.parameters()).device
    points = torch.from_numpy(np.stack(clouds)).to(device)
    generator = torch.Generator(device).manual_seed(seed)
    posterior = vae.encode(points, vae.encode_tokens, generator=generator)
    return posterior.mean.float().cpu().numpy()
