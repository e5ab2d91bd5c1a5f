"""Image-side features of rendered objects: encoder tokens, each part's coverage of the token
grid (from the renderer's part masks) and the part features pooled inside each mask."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.retrieval.encoders import ImageEncoder, coverage, pool

MASK_BACKGROUND = 255


def read_views(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A dataset object's RGBA views and part-index masks (255 = background)."""
    meta = json.loads((Path(folder) / "meta.json").read_text())
    if not meta.get("views"):
        raise ValueError(f"{folder} has no rendered views")
    images = [np.asarray(Image.open(Path(folder) / v["image"]).convert("RGBA"))
              for v in meta["views"]]
    masks = [np.asarray(Image.open(Path(folder) / v["mask"])) for v in meta["views"]]
    return images, masks


def part_masks(mask: np.ndarray, num_parts: int) -> np.ndarray:
    """Part-index mask (H, W) -> boolean masks (num_parts, H, W)."""
    return mask[None] == np.arange(num_parts, dtype=mask.dtype)[:, None, None]


@dataclass
class ViewFeatures:
    tokens: torch.Tensor  # (V, L, C)
    pooled: torch.Tensor  # (V, D) the encoder's own vector per view
    cover: torch.Tensor  # (V, parts, L) fraction of each token cell a part covers
    parts: torch.Tensor  # (V, parts, C) mask-pooled part features, NaN where not visible

    def part_mean(self) -> np.ndarray:
        """(parts, C) part features averaged over the views that show each part; NaN for a
        part no view shows."""
        parts = self.parts.numpy()
        seen = ~np.isnan(parts[..., 0])
        total = np.where(seen[..., None], parts, 0.0).sum(0)
        count = seen.sum(0)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / count).astype(np.float32)


def view_features(encoder: ImageEncoder, images: list[np.ndarray], masks: list[np.ndarray],
                  num_parts: int) -> ViewFeatures:
    """Encode the views of one object and pool its parts' features inside their masks."""
    encoded = encoder.encode(images)
    cover = torch.stack([coverage(part_masks(m, num_parts), encoded.grid) for m in masks])
    parts = torch.stack([pool(t, c) for t, c in zip(encoded.tokens, cover)])
    return ViewFeatures(encoded.tokens, encoded.pooled, cover, parts)
