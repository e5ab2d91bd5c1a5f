"""The small pieces UniPart's part DiT needs besides the dual-lane DiT (engine/training/
unipart.py trains them, engine/pipelines/unipart.py runs them):

- `SegmentContext`: the whole-object latents with a flag marking part i's (Z and X_i in L
  tokens, [z, flag] with d + 1 channels) -> context tokens of the image encoder's width,
  layer-normed like those tokens; saved as a folder (config.json + weights).
- `Scales`: per-channel standardisation of the three latent spaces the DiTs see (Z, X_gcs,
  X_ncs), saved as one JSON file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.files import write_json_atomic
from engine.models.attention import FP32LayerNorm
from engine.models.checkpoint import load_pretrained, save_folder
from engine.models.latent_scale import LatentScale

SCALES_NAME = "latent_scales.json"
SPACES = ("z", "gcs", "ncs")


@dataclass
class SegmentContextConfig:
    latent_channels: int = 32
    width: int = 1280  # the image encoder's token width


class SegmentContext(nn.Module):
    def __init__(self, config: SegmentContextConfig | None = None):
        super().__init__()
        self.config = config = config or SegmentContextConfig()
        self.proj = nn.Linear(config.latent_channels + 1, config.width)
        self.norm = FP32LayerNorm(config.width)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> SegmentContext:
        return load_pretrained(cls, SegmentContextConfig, folder, keep_extra=False)

    def save_pretrained(self, folder: str | Path) -> None:
        save_folder(self, {"_class_name": "SegmentContext", **asdict(self.config)}, folder)

    def forward(self, segment: torch.Tensor) -> torch.Tensor:
        """(…, L, d + 1) -> (…, L, width)."""
        return self.norm(self.proj(segment))


@dataclass
class Scales:
    z: LatentScale
    gcs: LatentScale
    ncs: LatentScale

    @classmethod
    def fit(cls, z: np.ndarray, gcs: np.ndarray, ncs: np.ndarray) -> Scales:
        """Statistics over (..., d) latents of each space."""
        return cls(LatentScale.fit(z), LatentScale.fit(gcs), LatentScale.fit(ncs))

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, {name: getattr(self, name).config() for name in SPACES})

    @classmethod
    def load(cls, path: str | Path) -> Scales:
        config = json.loads(Path(path).read_text())
        return cls(*(LatentScale(config[n]["latents_mean"], config[n]["latents_std"])
                     for n in SPACES))
