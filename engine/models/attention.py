"""Attention, MLP and the pre-norm block shared by the VecSet VAE and the dual-lane DiT.

Parameter names follow the public checkpoints (`to_q`, `to_out.0`, `ff.net.0.proj`, ...) so
their state dicts load unmodified. The head layout is the checkpoints' own, not the usual one:
self-attention concatenates [q | k | v] along channels and gives each head one consecutive
(3 · head_dim) chunk; cross-attention does the same with [k | v], while q is split normally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (the checkpoints were trained so), result in input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention; self-attention when `context` is None, else cross-attention.

    `cross_norm` puts a LayerNorm (`norm_cross`) on the context; `qk_norm` puts RMSNorm on
    each head's q and k (`norm_q`, `norm_k`, eps 1e-6).
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, *,
                 cross_norm: bool = False, qk_norm: bool = False, qkv_bias: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        context_dim = context_dim or dim
        self.norm_cross = FP32LayerNorm(context_dim) if cross_norm else None
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim, dim, bias=qkv_bias)
        self.norm_q = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else None
        self.norm_k = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else None
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def split_heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """(B, N, parts·dim) with per-head consecutive chunks -> `parts` tensors (B, H, N, D)."""
        b, n, _ = x.shape
        x = x.view(b, n, self.heads, parts * self.head_dim).transpose(1, 2)
        return x.split(self.head_dim, dim=-1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            q, k, v = self.split_heads(
                torch.cat([self.to_q(x), self.to_k(x), self.to_v(x)], dim=-1), 3)
        else:
            if self.norm_cross is not None:
                context = self.norm_cross(context)
            (q,) = self.split_heads(self.to_q(x), 1)
            k, v = self.split_heads(
                torch.cat([self.to_k(context), self.to_v(context)], dim=-1), 2)
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).flatten(2))


class GELUProjection(nn.Module):
    """Linear followed by exact (erf) GELU; its own module so the weight is `net.0.proj`."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    """MLP dim -> 4·dim -> dim. `net.1` is the checkpoints' (inactive) dropout slot, kept so
    the output layer is named `net.2`."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GELUProjection(dim, mult * dim), nn.Identity(),
                                 nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: [norm1, attn1 self-attention] [norm2, attn2 cross-attention]
    norm3, ff. Which attentions exist is set at construction, as in the checkpoints."""

    def __init__(self, dim: int, heads: int, *, self_attention: bool = True,
                 context_dim: int | None = None, cross_norm: bool = False,
                 qk_norm: bool = False, qkv_bias: bool = False):
        super().__init__()
        options = dict(qk_norm=qk_norm, qkv_bias=qkv_bias)
        if self_attention:
            self.norm1 = FP32LayerNorm(dim)
            self.attn1 = Attention(dim, heads, **options)
        self.self_attention = self_attention
        self.cross_attention = context_dim is not None
        if self.cross_attention:
            self.norm2 = FP32LayerNorm(dim)
            self.attn2 = Attention(dim, heads, context_dim, cross_norm=cross_norm, **options)
        self.norm3 = FP32LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.self_attention:
            x = x + self.attn1(self.norm1(x))
        if self.cross_attention:
            x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))
