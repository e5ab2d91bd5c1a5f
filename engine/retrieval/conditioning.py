"""The one place this package touches engine/retrieval/: image encoders (tokens + pooled
vector) and the part-level 3D features. Keeping it thin means a change of the retrieval
interface is fixed here, not across training, inference and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.retrieval.encoders import (DEFAULT_ENCODER, PARTCRAFTER_ENCODER, ImageEncoder,
                                       coverage, load_encoder)

__all__ = ["DEFAULT_ENCODER", "EncodedImages", "ImageEncoder", "PARTCRAFTER_ENCODER",
           "encode_images", "load_encoder", "mask_coverage", "object_embedding", "part_encoder",
           "partcrafter_spec", "pooled_tokens"]


@dataclass
class EncodedImages:
    tokens: torch.Tensor  # (B, L, C) float32, the encoder's patch tokens
    grid: tuple[int, int]  # token grid (rows, cols)
    pooled: torch.Tensor  # (B, D) the encoder's image vector


def encode_images(encoder: ImageEncoder, images: list[np.ndarray]) -> EncodedImages:
    """uint8 RGBA images (already framed) -> tokens, grid and pooled vectors."""
    encoded = encoder.encode(images)
    return EncodedImages(encoded.tokens, tuple(encoded.grid), encoded.pooled)


def partcrafter_spec(folder) -> str:
    """The encoder spec of a public PartCrafter folder's own DINOv2 conditioning."""
    return f"partcrafter:{folder}"


def object_embedding(pooled: torch.Tensor) -> torch.Tensor:
    """Search key of an image: the unit-norm pooled vector (cosine = inner product)."""
    return F.normalize(pooled.float(), dim=-1)


def pooled_tokens(tokens: torch.Tensor, grid: tuple[int, int], side: int) -> torch.Tensor:
    """(B, L, C) tokens on `grid` -> (B, side², C) by average pooling: a retrieved
    exemplar's image contributes these few tokens to the context."""
    b, _, c = tokens.shape
    maps = tokens.transpose(1, 2).reshape(b, c, *grid)
    return F.adaptive_avg_pool2d(maps, side).flatten(2).transpose(1, 2)


def mask_coverage(masks: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """Boolean part masks (N, H, W) -> (N, L) fraction of each token cell every part covers."""
    return coverage(masks, grid)


def part_encoder(vae_folder, device: str | torch.device = "cpu"):
    """Part meshes -> posterior-mean latents in the object frame (the retriever's 3D side)."""
    from engine.retrieval.shape import PartEncoder

    return PartEncoder(vae_folder, device)
