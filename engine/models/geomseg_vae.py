"""Geom-Seg VecSet VAE (UniPart §3.1-3.2): one latent set for geometry and part segmentation.

    encode:  points (xyz, normal, part code) -> latents Z (B, L, d); the VecSet encoder plus one
             input channel for the part code (`label_in`, zero-initialised: it is the extra
             column of the encoder's input projection, kept apart so `vae/` stays a plain
             TripoSG folder)
    D_geom:  the VecSet decoder, unchanged (negated occupancy logits)
    D_seg:   promptable mask decoder: prompt latent indices (B, K) -> mask logits over the
             latents (B, K, L) + a predicted mask IoU per prompt (ranks masks for NMS)
    D_pos:   MLP latent -> its anchor xyz (the encoder's FPS query point); trained on detached
             latents, so it never shapes the latent space

Folder layout (`save_pretrained`): `vae/` is a plain VecSetVAE folder (decodes Geom-Seg
latents as they are); `seg/` holds config.json (GeomSegConfig) and the weights of `label_in`,
`seg_decoder` and `pos_decoder`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from engine.geometry.fps import farthest_point_sample
from engine.models.attention import FP32LayerNorm, TransformerBlock
from engine.models.checkpoint import load_weights, read_config, save_folder, split_config
from engine.models.vecset_vae import NORMAL_CHANNELS, DiagonalGaussian, VecSetVAE

CLASS_NAME = "GeomSegVAE"
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0  # SAM's sigmoid focal loss


@dataclass
class GeomSegConfig:
    """Sizes of the Geom-Seg additions and the loss weights (the VecSet part has its own)."""
    num_tokens: int = 512  # L: latents per shape (query subset size)
    seg_width: int = 128
    seg_heads: int = 4
    seg_layers: int = 2  # self-attention blocks over the latents
    prompt_layers: int = 2  # cross-attention blocks: prompt token -> latents
    pos_width: int = 256
    train_prompts: int = 64  # random prompt latents per shape in the seg loss (more = faster)
    kl_weight: float = 1e-3  # on the KL averaged per latent element
    seg_weight: float = 1.0
    pos_weight: float = 1.0
    focal_weight: float = 20.0  # SAM's 20:1:1 focal : dice : IoU-score
    dice_weight: float = 1.0
    score_weight: float = 1.0


def mlp(dim_in: int, hidden: int, dim_out: int, depth: int = 2) -> nn.Sequential:
    """`depth` linear layers with GELU between them."""
    dims = [dim_in] + [hidden] * (depth - 1) + [dim_out]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(dims[i], dims[i + 1])] + ([nn.GELU()] if i < depth - 1 else [])
    return nn.Sequential(*layers)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), index (B, K) -> x[b, index[b, k]] as (B, K, C)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class SegDecoder(nn.Module):
    """Promptable latent segmentation, SAM-style but one-way so dense prompting stays cheap.

    The latents self-attend once per shape (shared by all prompts) and give per-latent mask
    features k_j. Each prompt token = its latent's feature + a learned prompt embedding; it
    cross-attends to the latents (prompts never see each other, so K prompts cost K·L) and
    a zero-initialised MLP turns it into an offset from the prompt latent's own mask feature:
    q_i = k_prompt + hyper(token_i), logit_ij = bias - |q_i - k_j|². Anchoring q_i at the
    prompt's own feature puts the prompt inside its mask from the start; a plain dot product
    got stuck predicting empty masks for the smaller parts. A score head predicts the mask IoU.
    """

    def __init__(self, latent_channels: int, width: int, heads: int, num_layers: int,
                 prompt_layers: int):
        super().__init__()
        self.proj_in = nn.Linear(latent_channels, width)
        self.blocks = nn.ModuleList([TransformerBlock(width, heads) for _ in range(num_layers)])
        self.norm = FP32LayerNorm(width)
        self.prompt_embedding = nn.Parameter(0.02 * torch.randn(width))
        self.prompt_blocks = nn.ModuleList(
            [TransformerBlock(width, heads, self_attention=False, context_dim=width)
             for _ in range(prompt_layers)])
        self.prompt_norm = FP32LayerNorm(width)
        self.mask_features = mlp(width, width, width)
        self.hyper = mlp(width, width, width)
        self.score_head = mlp(width, width, 1)
        nn.init.zeros_(self.hyper[-1].weight)
        nn.init.zeros_(self.hyper[-1].bias)
        self.logit_bias = nn.Parameter(torch.tensor(1.0))

    def forward(self, latents: torch.Tensor, prompts: torch.Tensor):
        """latents (B, L, d), prompts (B, K) latent indices -> mask logits (B, K, L) and
        predicted mask IoU (B, K)."""
        x = self.proj_in(latents)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        tokens = gather_rows(x, prompts) + self.prompt_embedding
        for block in self.prompt_blocks:
            tokens = block(tokens, x)
        tokens = self.prompt_norm(tokens)
        keys = self.mask_features(x)
        queries = gather_rows(keys, prompts) + self.hyper(tokens)
        distances = (queries.square().sum(-1, keepdim=True) + keys.square().sum(-1).unsqueeze(1)
                     - 2 * torch.einsum("bkc,blc->bkl", queries, keys))
        logits = self.logit_bias - distances
        return logits, self.score_head(tokens).squeeze(-1)


class GeomSegVAE(nn.Module):
    """VecSet VAE whose latents also carry part segmentation, with D_seg and D_pos heads."""

    def __init__(self, vae: VecSetVAE, config: GeomSegConfig | None = None):
        """Takes ownership of `vae` (its encoder gains the part-code channel)."""
        super().__init__()
        self.config = config = config or GeomSegConfig()
        self.vae = vae
        latent_channels = vae.config.latent_channels
        self.label_in = nn.Linear(1, vae.config.width_encoder, bias=False)
        nn.init.zeros_(self.label_in.weight)  # starts exactly as the plain VAE
        self.seg_decoder = SegDecoder(latent_channels, config.seg_width, config.seg_heads,
                                      config.seg_layers, config.prompt_layers)
        self.pos_decoder = mlp(latent_channels, config.pos_width, 3, depth=3)

    @classmethod
    def from_vecset(cls, vae: VecSetVAE, config: GeomSegConfig | None = None,
                    **overrides) -> GeomSegVAE:
        """Fine-tune start from a trained plain VAE (copied, same L and d): identical
        latents and occupancy at init. `overrides` replace fields of `config`."""
        return cls(copy.deepcopy(vae), replace(config or GeomSegConfig(), **overrides))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> GeomSegVAE:
        """Load a folder written by save_pretrained (`vae/` + `seg/`), in eval mode."""
        folder = Path(folder)
        return cls.with_additions(VecSetVAE.from_pretrained(folder / "vae"), folder / "seg")

    @classmethod
    def with_additions(cls, vae: VecSetVAE, folder: str | Path) -> GeomSegVAE:
        """The additions saved in `folder` (a `seg/` folder) over `vae`, in eval mode. Latent
        segmentation uses the additions alone, so a generator that only segments latents
        may pass any VecSet VAE of the same sizes."""
        config, _ = split_config(read_config(folder), GeomSegConfig)
        model = cls(vae, config)
        load_weights(model.additions(), folder)
        return model.eval()

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.vae.save_pretrained(folder / "vae")
        self.save_additions(folder / "seg")

    def save_additions(self, folder: str | Path) -> None:
        save_folder(self.additions(), {"_class_name": CLASS_NAME, **asdict(self.config)}, folder)

    def additions(self) -> nn.ModuleDict:
        """The modules a plain VecSet VAE lacks (the `seg/` weights)."""
        return nn.ModuleDict({"label_in": self.label_in, "seg_decoder": self.seg_decoder,
                              "pos_decoder": self.pos_decoder})

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by network, e.g. to freeze the encoder while training D_pos alone."""
        vae = self.vae
        return {"encoder": [*vae.encoder.parameters(), *vae.quant.parameters(),
                            *self.label_in.parameters()],
                "geometry_decoder": [*vae.post_quant.parameters(), *vae.decoder.parameters()],
                "segmentation_decoder": list(self.seg_decoder.parameters()),
                "position_decoder": list(self.pos_decoder.parameters())}

    # ---- encoding and decoding

    def sample_query_index(self, points: torch.Tensor, num_tokens: int | None = None,
                           generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, L) indices of the anchor points (the VecSet query subset)."""
        return self.vae.sample_query_index(points, num_tokens or self.config.num_tokens,
                                           generator)

    def encode(self, points: torch.Tensor, query_index: torch.Tensor | None = None,
               generator: torch.Generator | None = None
               ) -> tuple[DiagonalGaussian, torch.Tensor]:
        """points (B, P, 7): xyz, normal, part code -> (posterior over (B, L, d), the (B, L)
        query index used; latent i belongs to anchor point query_index[:, i])."""
        channels = self.vae.config.in_channels + NORMAL_CHANNELS
        if points.shape[-1] != channels + 1:
            raise ValueError(f"points need {channels + 1} channels (position, normal, part "
                             f"code), got {points.shape[-1]}")
        if query_index is None:
            query_index = self.sample_query_index(points, generator=generator)
        query_index = query_index.to(points.device).expand(points.shape[0], -1)
        encoder = self.vae.encoder
        x = encoder.blocks[0](self.input_features(gather_rows(points, query_index)),
                              self.input_features(points))
        for block in encoder.blocks[1:]:
            x = block(x)
        return DiagonalGaussian(self.vae.quant(encoder.norm_out(x))), query_index

    def input_features(self, points: torch.Tensor) -> torch.Tensor:
        """The encoder's input projection with the part-code channel added, per point. Kept
        per call (not gathered from the projected points) so the plain VAE's rounding holds."""
        channels = self.vae.config.in_channels + NORMAL_CHANNELS
        return (self.vae.encoder.proj_in(self.vae.point_features(points[..., :channels]))
                + self.label_in(points[..., channels:]))

    def decode(self, latents: torch.Tensor, queries: torch.Tensor,
               chunk_size: int = 16384) -> torch.Tensor:
        """D_geom: the VecSet decoder's NEGATED occupancy logits (B, M, 1)."""
        return self.vae.decode(latents, queries, chunk_size)

    def segment(self, latents: torch.Tensor, prompts: torch.Tensor):
        """D_seg: mask logits (B, K, L) and predicted mask IoU (B, K) for prompts (B, K)."""
        return self.seg_decoder(latents, prompts)

    def predict_anchors(self, latents: torch.Tensor) -> torch.Tensor:
        """D_pos: (..., L, d) -> anchor positions (..., L, 3)."""
        return self.pos_decoder(latents)

    # ---- training

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """batch: points (B, P, 7), part_labels (B, P), queries (B, M, 3), occupancy (B, M)
        (1 inside), optionally query_index (B, L). Returns the loss terms and their weighted
        sum "loss"; D_pos sees detached latents, so "pos" trains D_pos only."""
        points = batch["points"]
        posterior, query_index = self.encode(points, batch.get("query_index"), generator)
        latents = posterior.sample(generator)
        occupancy_logits = -self.decode(latents, batch["queries"]).squeeze(-1)
        recon = F.binary_cross_entropy_with_logits(occupancy_logits,
                                                   batch["occupancy"].to(latents.dtype))
        kl = 0.5 * (posterior.mean.square() + posterior.std.square() - 1.0
                    - posterior.logvar).mean()
        labels = batch["part_labels"].to(points.device).gather(1, query_index)
        seg = self.seg_loss(latents, labels, generator)
        anchors = gather_rows(points[..., :self.vae.config.in_channels], query_index)
        pos = self.pos_loss(latents.detach(), anchors)
        c = self.config
        loss = recon + c.kl_weight * kl + c.seg_weight * seg + c.pos_weight * pos
        return {"loss": loss, "recon": recon, "kl": kl, "seg": seg, "pos": pos}

    def seg_loss(self, latents: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Focal + dice on the masks of random prompts (the prompt latent's part), plus MSE of
        the score head against each predicted mask's actual IoU. labels: (B, L) per latent."""
        batch, count = labels.shape
        device = latents.device if generator is None else generator.device
        order = torch.rand(batch, count, generator=generator, device=device).argsort(-1)
        prompts = order[:, :min(self.config.train_prompts, count)].to(latents.device)
        target = (labels.unsqueeze(1) == labels.gather(1, prompts).unsqueeze(-1)).float()
        logits, scores = self.segment(latents, prompts)
        c = self.config
        return (c.focal_weight * focal_loss(logits, target) + c.dice_weight * dice_loss(
            logits, target) + c.score_weight * F.mse_loss(scores, mask_iou(logits > 0, target)))

    def pos_loss(self, latents: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """MSE of D_pos's anchors; pass detached latents to keep the encoder out of it."""
        return F.mse_loss(self.predict_anchors(latents), anchors)

    # ---- inference

    @torch.no_grad()
    def segment_latents(self, latents: torch.Tensor, num_prompts: int = 64,
                        nms_iou: float = 0.5, min_mask_fraction: float = 0.005
                        ) -> torch.Tensor:
        """Latent segmentation: part index per latent, (L,) for (L, d) input, (B, L) for
        (B, L, d); indices 0..N-1 in order of predicted mask score. Prompts are FPS over the
        D_pos anchors; masks with fewer than max(1, ceil(min_mask_fraction·L)) latents are
        dropped before NMS."""
        unbatched = latents.dim() == 2
        if unbatched:
            latents = latents.unsqueeze(0)
        count = latents.shape[1]
        anchors = self.predict_anchors(latents)
        prompts = farthest_point_sample(anchors, min(num_prompts, count))
        logits, scores = self.segment(latents, prompts)
        min_size = max(1, math.ceil(min_mask_fraction * count))
        parts = torch.stack([
            assign_latents(logit[mask_nms(logit > 0, score, nms_iou, min_size)], anchor)
            for logit, score, anchor in zip(logits, scores, anchors)])
        return parts[0] if unbatched else parts


# ---- the part-code channel (the data side's convention)

def part_codes(part_labels: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The encoder's part-code channel: (B, P) labels -> (B, P) codes, each sample's parts
    evenly spaced in [-1, 1] (one part: 0) in a random order, so codes name groups, not
    part identities."""
    codes = torch.empty(part_labels.shape, dtype=torch.float32, device=part_labels.device)
    for row, labels in enumerate(part_labels):
        values, inverse = labels.unique(return_inverse=True)
        spaced = torch.linspace(-1.0, 1.0, len(values)) if len(values) > 1 else torch.zeros(1)
        device = "cpu" if generator is None else generator.device
        order = torch.randperm(len(values), generator=generator, device=device).cpu()
        codes[row] = spaced[order].to(codes.device)[inverse]
    return codes


# ---- loss pieces

def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sigmoid focal loss (SAM's alpha 0.25, gamma 2), averaged over every element."""
    probability = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = probability * target + (1 - probability) * (1 - target)
    alpha_t = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per mask (last axis), averaged over masks."""
    probability = logits.sigmoid()
    overlap = (probability * target).sum(-1)
    return (1 - (2 * overlap + 1) / (probability.sum(-1) + target.sum(-1) + 1)).mean()


def mask_iou(masks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of binary masks with targets along the last axis (empty vs empty counts 1)."""
    masks, target = masks.float(), target.float()
    intersection = (masks * target).sum(-1)
    union = masks.sum(-1) + target.sum(-1) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


# ---- latent segmentation post-processing

def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5,
             min_size: int = 1) -> torch.Tensor:
    """Indices of masks (K, L) bool kept by greedy NMS in descending score: masks smaller than
    `min_size` go first, then each mask whose IoU with a kept one exceeds the threshold."""
    sizes = masks.sum(-1)
    candidates = [i for i in scores.argsort(descending=True).tolist() if sizes[i] >= min_size]
    floats = masks.float()
    intersection = floats @ floats.T
    iou = intersection / (sizes[:, None] + sizes[None, :] - intersection).clamp(min=1)
    suppressed = torch.zeros(len(masks), dtype=torch.bool, device=masks.device)
    kept: list[int] = []
    for i in candidates:
        if not suppressed[i]:
            kept.append(i)
            suppressed |= iou[i] > iou_threshold
    return torch.tensor(kept, dtype=torch.long, device=masks.device)


def assign_latents(logits: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Part index per latent from the kept masks' logits (N, L): the mask with the highest
    logit; latents no mask covers (logit <= 0 everywhere) take the mask with the nearest
    member anchor. Masks that win no latent vanish; indices are 0..N'-1 in mask order."""
    count = logits.shape[1]
    if logits.shape[0] == 0:
        return torch.zeros(count, dtype=torch.long, device=logits.device)
    parts = logits.argmax(0)
    members = logits > 0
    uncovered = ~members.any(0)
    if uncovered.any():
        distances = torch.cdist(anchors[uncovered], anchors)  # (U, L)
        to_mask = torch.where(members[None], distances[:, None], torch.inf).amin(-1)  # (U, N)
        parts[uncovered] = to_mask.argmin(-1)
    return parts.unique(return_inverse=True)[1]


# ---- evaluation

def _overlap_counts(pred, gt) -> np.ndarray:
    """(predicted segments, GT parts) latent counts; labels may be any integers."""
    pred, gt = (np.asarray(torch.as_tensor(x).cpu()).ravel() for x in (pred, gt))
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.size} predicted labels for {gt.size} ground-truth labels")
    pred = np.unique(pred, return_inverse=True)[1]
    gt = np.unique(gt, return_inverse=True)[1]
    counts = np.zeros((pred.max() + 1, gt.max() + 1), dtype=np.int64)
    np.add.at(counts, (pred, gt), 1)
    return counts


def latent_assignment_accuracy(pred, gt) -> float:
    """Fraction of latents whose predicted segment is matched to their GT part (Hungarian
    one-to-one matching by overlap; unmatched segments count wrong). pred, gt: (L,) labels."""
    counts = _overlap_counts(pred, gt)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def segmentation_miou(pred, gt) -> float:
    """Mean IoU over GT parts under the same matching; unmatched GT parts count 0."""
    counts = _overlap_counts(pred, gt)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    union = counts.sum(1)[rows] + counts.sum(0)[cols] - counts[rows, cols]
    return float((counts[rows, cols] / union).sum() / counts.shape[1])
