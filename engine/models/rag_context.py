"""Retrieval-augmented conditioning (PartRAG §3.3, Eq. 2): the DiT's cross-attention context.

    E_fused = Concat(E_q, E_r^1, ..., E_r^k)

E_q are the query image's DINOv2 tokens; each retrieved exemplar j contributes its image's
DINOv2 tokens and its parts' VAE latents, the latter projected to the context width by
`RetrievalContext`. The DiT stays the public network: it only sees a longer context, in
both lanes. With k = 0 the context is E_q itself, so generation is exactly PartCrafter's.
The unconditional branch of guidance is a zero context of the same length (the sampler
builds it).

`RetrievalContext` is PartRAG's own weights: saved in `rag/` beside `transformer/`, and
optional, so a public PartCrafter folder (without `rag/`) runs with k = 0 only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from engine.models.attention import FP32LayerNorm
from engine.models.checkpoint import CONFIG_NAME, load_pretrained, save_folder
from engine.models.dual_lane_dit import part_counts

FOLDER = "rag"  # beside transformer/ in a model folder
CLASS_NAME = "RetrievalContext"


@dataclass
class RetrievalContextConfig:
    latent_channels: int = 64  # the VAE's latent width
    cross_attention_dim: int = 1024  # the DiT's context width (DINOv2-large tokens)


class RetrievalContext(nn.Module):
    """Projects retrieved parts' VAE latents to context tokens. The LayerNorm puts them on
    the scale of DINOv2's output tokens, which are layer-normed too."""

    def __init__(self, config: RetrievalContextConfig | None = None):
        super().__init__()
        self.config = config = config or RetrievalContextConfig()
        self.latent_proj = nn.Linear(config.latent_channels, config.cross_attention_dim)
        self.latent_norm = FP32LayerNorm(config.cross_attention_dim)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> RetrievalContext:
        return load_pretrained(cls, RetrievalContextConfig, folder, keep_extra=False)

    @classmethod
    def beside(cls, model_folder: str | Path) -> RetrievalContext | None:
        """The `rag/` projection of a model folder, or None when it has none (a public
        PartCrafter folder): retrieval then has to stay at k = 0."""
        folder = Path(model_folder) / FOLDER
        return cls.from_pretrained(folder) if (folder / CONFIG_NAME).is_file() else None

    def save_pretrained(self, folder: str | Path) -> None:
        save_folder(self, {"_class_name": CLASS_NAME, **asdict(self.config)}, folder)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """(..., latent_channels) -> (..., cross_attention_dim)."""
        if latents.shape[-1] != self.config.latent_channels:
            raise ValueError(f"retrieved latents need {self.config.latent_channels} channels, "
                             f"got {latents.shape[-1]}")
        return self.latent_norm(self.latent_proj(latents))


def fuse_context(query_tokens: torch.Tensor, retrieved_images: torch.Tensor | None = None,
                 retrieved_latents: torch.Tensor | None = None,
                 projection: RetrievalContext | None = None) -> torch.Tensor:
    """E_fused per object: query_tokens (objects, L, Cc), retrieved_images
    (objects, k, L_img, Cc), retrieved_latents (objects, k, T_r, latent_channels) with each
    exemplar's part latents flattened into T_r tokens -> (objects, L + k·(L_img + T_r), Cc),
    ordered [E_q, image 1, latents 1, ..., image k, latents k]. Without exemplars (None or
    k = 0) the query tokens come back as they are."""
    if query_tokens.dim() != 3:
        raise ValueError(f"query tokens must be (objects, L, Cc), got "
                         f"{tuple(query_tokens.shape)}")
    objects, _, width = query_tokens.shape
    exemplars = []  # per source: (objects, k, tokens, Cc)
    if retrieved_images is not None:
        check_retrieved("retrieved images", retrieved_images, objects, width)
        exemplars.append(retrieved_images)
    if retrieved_latents is not None:
        if projection is None:
            raise ValueError("retrieved latents need the RetrievalContext projection (the "
                             "model folder's rag/); without it only k = 0 is possible")
        check_retrieved("retrieved latents", retrieved_latents, objects,
                        projection.config.latent_channels)
        exemplars.append(projection(retrieved_latents).to(query_tokens.dtype))
    counts = {source.shape[1] for source in exemplars}
    if len(counts) > 1:
        raise ValueError(f"retrieved images and latents disagree on k: {sorted(counts)}")
    if not exemplars or counts == {0}:
        return query_tokens
    per_exemplar = torch.cat(exemplars, dim=2).flatten(1, 2)
    return torch.cat([query_tokens, per_exemplar], dim=1)


def check_retrieved(name: str, tensor: torch.Tensor, objects: int, channels: int) -> None:
    if tensor.dim() != 4 or tensor.shape[0] != objects or tensor.shape[-1] != channels:
        raise ValueError(f"{name} must be ({objects} objects, k, tokens, {channels}), "
                         f"got {tuple(tensor.shape)}")


def per_part_rows(context: torch.Tensor, num_parts: int | torch.Tensor) -> torch.Tensor:
    """(objects, L, Cc) -> (rows, L, Cc): every part row of an object gets its context."""
    counts = part_counts(num_parts).to(context.device)
    if counts.numel() != context.shape[0]:
        raise ValueError(f"{counts.numel()} part counts for {context.shape[0]} objects")
    return context.repeat_interleave(counts, dim=0)
