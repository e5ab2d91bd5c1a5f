"""VecSet VAE: a surface point cloud <-> a set of latent tokens <-> an implicit field.

Same parameter names, shapes and config keys as the public `vae/` folder (TripoSG's VAE), so
that folder loads unmodified:

    encode: points (xyz + normal) -> embed -> proj_in; a query subset of them cross-attends to
            all of them (block 0), then self-attention blocks, norm_out, quant -> moments
    decode: latents -> post_quant -> self-attention blocks; query points -> embed ->
            proj_query cross-attend to those tokens (last block), norm_out, proj_out, negated
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from engine.geometry.fps import farthest_point_sample
from engine.models.attention import FP32LayerNorm, TransformerBlock
from engine.models.checkpoint import PretrainedModule

NORMAL_CHANNELS = 3  # each encoder point carries a unit normal after its position
QUERY_CANDIDATES_PER_TOKEN = 4  # query subset: FPS of T tokens among 4·T random points
CLASS_NAME = "TripoSGVAEModel"  # written on save so the reference code can load our folders


@dataclass
class VecSetVAEConfig:
    """The public config keys; defaults are the full published size."""
    in_channels: int = 3
    latent_channels: int = 64
    num_attention_heads: int = 8
    width_encoder: int = 512
    width_decoder: int = 1024
    num_layers_encoder: int = 8
    num_layers_decoder: int = 16
    embedding_type: str = "frequency"
    embed_frequency: int = 8
    embed_include_pi: bool = False


class FrequencyEmbedding(nn.Module):
    """xyz -> [xyz, sin(a), cos(a)], a = x_i · 2^j (· π) with the frequency index fastest."""

    def __init__(self, num_frequencies: int, include_pi: bool):
        super().__init__()
        frequencies = 2.0 ** torch.arange(num_frequencies)
        if include_pi:
            frequencies = frequencies * math.pi
        self.register_buffer("frequencies", frequencies, persistent=False)

    def output_channels(self, in_channels: int) -> int:
        return in_channels * (2 * len(self.frequencies) + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 even in a half-precision model: x · 2^7 in float16 leaves sin/cos no digits
        angles = (x.float().unsqueeze(-1) * self.frequencies.float()).flatten(-2)
        return torch.cat([x.float(), angles.sin(), angles.cos()], dim=-1).to(x.dtype)


class DiagonalGaussian:
    """The encoder's posterior: `moments` as `quant` returns them (mean, then log-variance),
    log-variance clamped to [-30, 20] as the checkpoints were trained."""

    def __init__(self, moments: torch.Tensor):
        self.moments = moments
        self.mean, logvar = moments.chunk(2, dim=-1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        device = self.mean.device if generator is None else generator.device
        noise = torch.randn(self.mean.shape, generator=generator, device=device,
                            dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)


class VecSetEncoder(nn.Module):
    """Query tokens cross-attend to all points (block 0), then self-attend (the rest)."""

    def __init__(self, in_channels: int, width: int, heads: int, num_layers: int):
        super().__init__()
        self.proj_in = nn.Linear(in_channels, width)
        self.blocks = nn.ModuleList(
            [TransformerBlock(width, heads, self_attention=False, context_dim=width,
                              cross_norm=True)]
            + [TransformerBlock(width, heads) for _ in range(num_layers)])
        self.norm_out = FP32LayerNorm(width)

    def forward(self, point_features: torch.Tensor, query_features: torch.Tensor):
        points = self.proj_in(point_features)
        x = self.blocks[0](self.proj_in(query_features), points)
        for block in self.blocks[1:]:
            x = block(x)
        return self.norm_out(x)


class VecSetDecoder(nn.Module):
    """Latent tokens self-attend; query points cross-attend to them (last block) -> logit."""

    def __init__(self, query_channels: int, width: int, heads: int, num_layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            [TransformerBlock(width, heads) for _ in range(num_layers)]
            + [TransformerBlock(width, heads, self_attention=False, context_dim=width,
                                cross_norm=True)])
        self.proj_query = nn.Linear(query_channels, width)
        self.norm_out = FP32LayerNorm(width)
        self.proj_out = nn.Linear(width, 1)

    def latent_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The self-attention stack, run once per shape and shared by all query chunks."""
        for block in self.blocks[:-1]:
            x = block(x)
        return x

    def logits_at(self, tokens: torch.Tensor, query_features: torch.Tensor) -> torch.Tensor:
        x = self.blocks[-1](self.proj_query(query_features), tokens)
        return self.proj_out(self.norm_out(x))


# config.json keys (kept as extra config) saying how the bundle was trained to encode, so its
# users encode the same way; folders that do not say get the public model's sizes.
ENCODE_TOKENS_KEY, ENCODE_POINTS_KEY = "encode_num_tokens", "encode_num_points"
PUBLIC_TOKENS, PUBLIC_POINTS = 512, 8192


class VecSetVAE(PretrainedModule):
    """Shape <-> latent token set, loadable from and savable to a public `vae/` folder."""

    config_type, class_name = VecSetVAEConfig, CLASS_NAME

    def __init__(self, config: VecSetVAEConfig | None = None, **extra_config):
        super().__init__(config, **extra_config)
        config = self.config
        if config.embedding_type != "frequency":
            raise ValueError(f"unsupported embedding_type {config.embedding_type!r}")
        self.embedder = FrequencyEmbedding(config.embed_frequency, config.embed_include_pi)
        embedded = self.embedder.output_channels(config.in_channels)
        heads = config.num_attention_heads
        self.encoder = VecSetEncoder(embedded + NORMAL_CHANNELS, config.width_encoder, heads,
                                     config.num_layers_encoder)
        self.quant = nn.Linear(config.width_encoder, 2 * config.latent_channels)
        self.post_quant = nn.Linear(config.latent_channels, config.width_decoder)
        self.decoder = VecSetDecoder(embedded, config.width_decoder, heads,
                                     config.num_layers_decoder)

    @property
    def encode_tokens(self) -> int:
        """Latent tokens per shape the bundle was trained with."""
        return int(self.extra_config.get(ENCODE_TOKENS_KEY, PUBLIC_TOKENS))

    @property
    def encode_points(self) -> int:
        """Surface points per shape the bundle was trained to encode."""
        return int(self.extra_config.get(ENCODE_POINTS_KEY, PUBLIC_POINTS))

    def sample_query_index(self, points: torch.Tensor, num_tokens: int,
                           generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T) indices of the query subset: 4·T points drawn at random (with replacement
        only when there are fewer), then T of those by farthest point sampling from the first."""
        count = points.shape[1]
        candidates = QUERY_CANDIDATES_PER_TOKEN * num_tokens
        device = points.device if generator is None else generator.device
        if candidates <= count:
            drawn = torch.randperm(count, generator=generator, device=device)[:candidates]
        else:
            drawn = torch.randint(count, (candidates,), generator=generator, device=device)
        drawn = drawn.to(points.device)
        spread = farthest_point_sample(points[:, drawn, :self.config.in_channels], num_tokens)
        return drawn[spread]

    def encode(self, points: torch.Tensor, num_tokens: int | None = None, *,
               query_index: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> DiagonalGaussian:
        """points (B, P, in_channels + 3): positions then unit normals. The T latent tokens
        come from the query subset `query_index` ((T,) or (B, T)), or from
        `sample_query_index(points, num_tokens, generator)` when it is not given."""
        if (num_tokens is None) == (query_index is None):
            raise ValueError("give exactly one of num_tokens and query_index")
        channels = self.config.in_channels + NORMAL_CHANNELS
        if points.shape[-1] != channels:
            raise ValueError(f"points need {channels} channels (position, normal), "
                             f"got {points.shape[-1]}")
        if query_index is None:
            query_index = self.sample_query_index(points, num_tokens, generator)
        index = query_index.to(points.device).expand(points.shape[0], -1)
        queries = points.gather(1, index.unsqueeze(-1).expand(-1, -1, channels))
        x = self.encoder(self.point_features(points), self.point_features(queries))
        return DiagonalGaussian(self.quant(x))

    def point_features(self, points: torch.Tensor) -> torch.Tensor:
        """Embedded positions followed by the normals: the encoder's input per point."""
        positions = points[..., :self.config.in_channels]
        return torch.cat([self.embedder(positions), points[..., self.config.in_channels:]], -1)

    def field(self, latents: torch.Tensor, chunk_size: int = 16384):
        """The implicit field of ONE shape's latents (1, T, latent_channels) as a function
        points (N, 3) -> (N,) negated logits, for the extractors: the latent self-attention
        stack runs once here, not once per query chunk."""
        if latents.shape[0] != 1:
            raise ValueError(f"field() takes one shape's latents, got a batch of {latents.shape[0]}")
        tokens = self.decoder.latent_tokens(self.post_quant(latents))

        def logits(points: torch.Tensor) -> torch.Tensor:
            chunks = points.to(tokens.dtype)[None].split(chunk_size, dim=1)
            return -torch.cat([self.decoder.logits_at(tokens, self.embedder(c))
                               for c in chunks], dim=1)[0, :, 0]
        return logits

    def decode(self, latents: torch.Tensor, queries: torch.Tensor,
               chunk_size: int = 16384) -> torch.Tensor:
        """latents (B, T, latent_channels), query points (B, M, in_channels) -> (B, M, 1)
        logits, negated as the reference returns them (the surface is their zero level set).
        Queries go through in chunks of `chunk_size` to bound memory on dense grids."""
        tokens = self.decoder.latent_tokens(self.post_quant(latents))
        logits = [self.decoder.logits_at(tokens, self.embedder(chunk))
                  for chunk in queries.split(chunk_size, dim=1)]
        return -torch.cat(logits, dim=1)
