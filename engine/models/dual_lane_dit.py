"""Dual-lane DiT: PartCrafter's denoiser over all parts of an object at once.

Same parameter names, shapes and config keys as the public `transformer/` folder, so that
folder loads unmodified:

    timestep -> sinusoidal -> time_proj -> one extra token in front of every part's tokens
    latents -> proj_in, + part_embedding(part id) on every token (time token included)
    blocks: local ones attend within each part, global ones over all parts of an object;
            blocks past the middle first merge a long skip from the first half
    norm_out, drop the time token, proj_out -> v = x0 - noise

Rows are parts: the latents of all parts of all objects are stacked, and `num_parts` says
how many consecutive rows make up each object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.attention import FP32LayerNorm, TransformerBlock
from engine.models.checkpoint import PretrainedModule

CLASS_NAME = "PartCrafterDiTModel"  # written on save so the reference code can load our folders
MAX_PERIOD = 10000  # of the sinusoidal timestep embedding


@dataclass
class DualLaneDiTConfig:
    """The public config keys; defaults are the reference code's, so a config.json that
    leaves a key out means what it means there. The published model lists its global
    blocks (0, 2, ..., 20) explicitly; with neither ids nor range every block is local."""
    num_attention_heads: int = 16
    width: int = 2048
    in_channels: int = 64
    num_layers: int = 21
    cross_attention_dim: int = 1024
    max_num_parts: int = 32
    enable_part_embedding: bool = True
    enable_local_cross_attn: bool = True
    enable_global_cross_attn: bool = True
    global_attn_block_ids: list[int] | None = None
    global_attn_block_id_range: list[int] | None = None  # [first, last], both included

    def global_blocks(self) -> frozenset[int]:
        ids = self.global_attn_block_ids
        if ids is None and self.global_attn_block_id_range is not None:
            first, last = self.global_attn_block_id_range
            ids = range(first, last + 1)
        ids = frozenset(ids or ())
        wrong = sorted(i for i in ids if not 0 <= i < self.num_layers)
        if wrong:
            raise ValueError(f"global attention block ids {wrong} are outside the "
                             f"{self.num_layers} blocks")
        return ids


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """(rows,) -> (rows, dim) float32: [sin(t·f), cos(t·f)], f = 10000^(-i/half) for
    i < half, as the checkpoints were trained (sin first, no frequency shift)."""
    half = dim // 2
    exponent = -math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32,
                                                    device=timesteps.device) / half
    angles = timesteps.float()[:, None] * torch.exp(exponent)[None, :]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(embedding, (0, dim % 2))


class TimestepProjection(nn.Module):
    """The sinusoidal embedding's MLP (width -> 4·width -> width, exact GELU)."""

    def __init__(self, width: int):
        super().__init__()
        self.linear_1 = nn.Linear(width, 4 * width)
        self.linear_2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(x)))


class DiTBlock(TransformerBlock):
    """TransformerBlock (q/k RMSNorm, no qkv bias) with the optional long skip in front:
    skip_norm(skip_linear([skip, x])), linear first as the checkpoints were trained."""

    def __init__(self, width: int, heads: int, context_dim: int, skip: bool):
        super().__init__(width, heads, context_dim=context_dim, qk_norm=True)
        self.has_skip = skip
        if skip:
            self.skip_linear = nn.Linear(2 * width, width)
            self.skip_norm = FP32LayerNorm(width)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.has_skip:
            x = self.skip_norm(self.skip_linear(torch.cat([skip, x], dim=-1)))
        return super().forward(x, context)


def part_counts(num_parts: int | torch.Tensor) -> torch.Tensor:
    """num_parts (an int: one object of that many parts; or a 1-D integer tensor of part
    counts, one per object) -> a 1-D int64 tensor of counts."""
    if isinstance(num_parts, int) and not isinstance(num_parts, bool):
        return torch.tensor([num_parts])
    if (isinstance(num_parts, torch.Tensor) and num_parts.dim() == 1
            and not num_parts.is_floating_point() and num_parts.dtype != torch.bool):
        return num_parts.long()
    shown = (f"a {num_parts.dtype} tensor of shape {tuple(num_parts.shape)}"
             if isinstance(num_parts, torch.Tensor) else type(num_parts).__name__)
    raise TypeError(f"num_parts must be an int or a 1-D integer tensor of part counts, "
                    f"got {shown}")


class PartLayout:
    """Which rows belong to which object: part ids, and the rows grouped by part count so
    a global block runs each group of equally sized objects as one batch."""

    def __init__(self, num_parts: int | torch.Tensor, rows: int, device: torch.device):
        counts = part_counts(num_parts).tolist()
        if sum(counts) != rows or min(counts, default=0) < 1:
            raise ValueError(f"part counts {counts} must be positive and add up to the "
                             f"{rows} latent rows (several objects need a tensor of counts)")
        self.counts = counts
        starts = torch.tensor([0] + counts[:-1], device=device).cumsum(0)
        sizes = torch.tensor(counts, device=device)
        self.part_ids = (torch.arange(rows, device=device)
                         - starts.repeat_interleave(sizes, output_size=rows))
        self.groups = []  # (objects, count) row indices, one entry per distinct count
        for count in sorted(set(counts)):
            first_rows = starts[sizes == count]
            self.groups.append(first_rows[:, None] + torch.arange(count, device=device))
        self.restore = torch.cat([group.flatten() for group in self.groups]).argsort()

    def gather(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(rows, S, W) -> (objects, count·S, W): each object's parts as one sequence."""
        objects, count = rows.shape
        return x[rows.flatten()].reshape(objects, count * x.shape[1], x.shape[2])


class DualLaneDiT(PretrainedModule):
    """PartCrafter's transformer, loadable from and savable to a public `transformer/` folder."""

    config_type, class_name = DualLaneDiTConfig, CLASS_NAME

    def __init__(self, config: DualLaneDiTConfig | None = None, **extra_config):
        super().__init__(config, **extra_config)
        config = self.config
        self.global_blocks = config.global_blocks()
        width, layers = config.width, config.num_layers
        self.time_proj = TimestepProjection(width)
        if config.enable_part_embedding:
            self.part_embedding = nn.Embedding(config.max_num_parts, width)
        self.proj_in = nn.Linear(config.in_channels, width)
        self.blocks = nn.ModuleList(
            [DiTBlock(width, config.num_attention_heads, config.cross_attention_dim,
                      skip=layer > layers // 2) for layer in range(layers)])
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, config.in_channels)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor | float,
                context: torch.Tensor, num_parts: int | torch.Tensor) -> torch.Tensor:
        """latents (rows, T, in_channels), timestep σ·1000 (a number or one per row),
        context (rows, L, cross_attention_dim), num_parts -> predicted v (rows, T, in_channels).

        An int `num_parts` is one object (part ids 0..n-1). Several objects, the doubled
        classifier-free-guidance batch included, need a tensor of counts, e.g. [n, n]: the
        reference's int with a doubled batch would give the second half ids n..2n-1."""
        self.check_inputs(latents, context)
        rows = latents.shape[0]
        layout = PartLayout(num_parts, rows, latents.device)
        if self.config.enable_part_embedding and max(layout.counts) > self.config.max_num_parts:
            raise ValueError(f"an object has {max(layout.counts)} parts; this model embeds "
                             f"at most max_num_parts={self.config.max_num_parts}")
        timestep = torch.as_tensor(timestep, device=latents.device)
        if timestep.dim() == 0:
            timestep = timestep.expand(rows)
        elif timestep.shape != (rows,):
            raise ValueError(f"timestep must be a number or one per row ({rows},), "
                             f"got shape {tuple(timestep.shape)}")
        time = self.time_proj(timestep_embedding(timestep, self.config.width).to(latents.dtype))
        x = torch.cat([time[:, None], self.proj_in(latents)], dim=1)
        if self.config.enable_part_embedding:
            x = x + self.part_embedding(layout.part_ids)[:, None]
        skips, half = [], self.config.num_layers // 2
        for layer in range(len(self.blocks)):
            skip = skips.pop() if layer > half else None
            x = self.run_block(layer, x, context, skip, layout)
            if layer < half:
                skips.append(x)
        return self.proj_out(self.norm_out(x)[:, 1:])

    def run_block(self, layer: int, x: torch.Tensor, context: torch.Tensor,
                  skip: torch.Tensor | None, layout: PartLayout) -> torch.Tensor:
        """A local block on each part's own tokens and context; a global block on each
        object's concatenated parts, with the context of the object's first part. A lane
        whose cross-attention is disabled sees a zero context, as in the reference."""
        is_global = layer in self.global_blocks
        enabled = (self.config.enable_global_cross_attn if is_global
                   else self.config.enable_local_cross_attn)
        if not enabled and self.global_blocks:
            context = torch.zeros_like(context)
        block = self.blocks[layer]
        if not is_global:
            return block(x, context, skip)
        outputs = []
        for rows in layout.groups:
            grouped_skip = None if skip is None else layout.gather(skip, rows)
            out = block(layout.gather(x, rows), context[rows[:, 0]], grouped_skip)
            outputs.append(out.reshape(-1, *x.shape[1:]))
        return torch.cat(outputs)[layout.restore]

    def check_inputs(self, latents: torch.Tensor, context: torch.Tensor) -> None:
        channels, context_dim = self.config.in_channels, self.config.cross_attention_dim
        if latents.dim() != 3 or latents.shape[-1] != channels:
            raise ValueError(f"latents must be (rows, tokens, {channels}), "
                             f"got {tuple(latents.shape)}")
        if (context.dim() != 3 or context.shape[0] != latents.shape[0]
                or context.shape[-1] != context_dim):
            raise ValueError(f"context must be ({latents.shape[0]} rows, length, "
                             f"{context_dim}), got {tuple(context.shape)}")
