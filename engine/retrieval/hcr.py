"""Hierarchical Contrastive Retrieval (PartRAG §3.2, Algorithms 1-2): projection heads that
align frozen image features with 3D part latents at the part and the object level.

    part level    x_i = image tokens pooled inside part i's 2D mask     y_i = mean of part i's
                                                                          VAE latent tokens
    object level  x_obj = mean_i x_i                                    y_obj = mean_i y_i

Each of the four goes through its own head (LayerNorm, MLP) to a shared embedding space.
Symmetric InfoNCE (image -> 3D and 3D -> image) at both levels: positives of a part are the
parts with the same label in any object (e.g. every chair_leg), positives of an object are
views of the same instance; the rest are negatives. With several positives a row's loss is
-log of their summed softmax probability (Algorithm 2's -log P_ii when there is one).

Images at inference have no part masks, so `part_queries` learned queries attention-pool
the tokens (a learned soft mask each). In training every ground-truth part is matched to one
query (Hungarian, on the cross-entropy between the query's attention map and the part's mask
coverage); matched queries learn that mask and, through the part head, the part's
contrastive objective. Then:
- a part-level query without a mask is each query's pooled tokens; with a user mask, the
  tokens pooled inside the mask, as in training;
- an object-level query is the mean of the queries' pooled tokens (`object_features`), the
  mask-free form of training's x_obj. Pooling the foreground instead (area- rather than
  part-weighted) put the queries off the inputs the object head learned: object recall@1
  0.692 against 0.720 on the val split (README, Retrieval results). Object search blends
  this space's cosine with the encoder's own (search.joint_object).

Training (`HCRTrainer`) keeps a momentum copy of the heads (m = 0.999) whose keys fill
bidirectional queues (image and 3D, Algorithm 1) of `queue_size` entries at each level, so
every step contrasts against many more negatives than the batch. The loss optimised is the
paper's L_HCR = λ_part·L_part + λ_obj·L_obj (λ = 0.03 both, the weights with which it joins
the flow loss), plus the part-query terms weighted by λ_part.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from engine.models.checkpoint import load_pretrained, save_folder
from engine.retrieval.encoders import DEFAULT_ENCODER

CLASS_NAME = "HierarchicalContrastiveRetriever"
NO_ID = -1  # empty queue slots and padded parts


@dataclass
class HCRConfig:
    token_dim: int = 1280  # image encoder token channels (EfficientNet-Lite0 head: 1280)
    latent_dim: int = 32  # VAE latent channels
    encoder: str = DEFAULT_ENCODER  # the encoder the heads were trained on
    embed_dim: int = 256
    hidden_dim: int = 512
    part_queries: int = 8  # attention-pooled part queries (the dataset has at most 8 parts)
    attention_dim: int = 128
    temperature: float = 0.07
    momentum: float = 0.999
    queue_size: int = 4096  # per level and side; the paper uses 65,536
    lambda_part: float = 0.03
    lambda_obj: float = 0.03


def head(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(inputs), nn.Linear(inputs, hidden), nn.GELU(),
                         nn.Linear(hidden, outputs))


class PartQueries(nn.Module):
    """Learned queries attention-pooling image tokens: (B, L, C) -> attention (B, M, L) and
    pooled tokens (B, M, C), i.e. M learned soft part masks."""

    def __init__(self, token_dim: int, count: int, dim: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(count, dim) / dim ** 0.5)
        self.norm = nn.LayerNorm(token_dim)
        self.key = nn.Linear(token_dim, dim)

    def forward(self, tokens: torch.Tensor):
        logits = self.queries @ self.key(self.norm(tokens)).transpose(1, 2)
        attention = (logits / self.queries.shape[-1] ** 0.5).softmax(-1)
        return attention, attention @ tokens


class HCR(nn.Module):
    """The retriever's trained weights: four heads and the part queries."""

    def __init__(self, config: HCRConfig | None = None):
        super().__init__()
        self.config = c = config or HCRConfig()
        self.image_part = head(c.token_dim, c.hidden_dim, c.embed_dim)
        self.image_object = head(c.token_dim, c.hidden_dim, c.embed_dim)
        self.shape_part = head(c.latent_dim, c.hidden_dim, c.embed_dim)
        self.shape_object = head(c.latent_dim, c.hidden_dim, c.embed_dim)
        self.part_queries = PartQueries(c.token_dim, c.part_queries, c.attention_dim)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> HCR:
        return load_pretrained(cls, HCRConfig, folder, keep_extra=False)

    def save_pretrained(self, folder: str | Path) -> None:
        save_folder(self, {"_class_name": CLASS_NAME, **asdict(self.config)}, folder)

    @torch.no_grad()
    def object_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """x_obj of images without masks: (B, L, C) tokens -> (B, C), the mean of the part
        queries' pooled tokens (training averages the mask-pooled parts)."""
        _, pooled = self.part_queries(tokens)
        return pooled.mean(1)

    # Unit-norm embeddings for the index; inputs are raw pooled features.
    @torch.no_grad()
    def embed(self, level: str, side: str, features: torch.Tensor) -> torch.Tensor:
        """level "part" | "object", side "image" (pooled tokens) | "shape" (mean latents)."""
        heads = {("part", "image"): self.image_part, ("object", "image"): self.image_object,
                 ("part", "shape"): self.shape_part, ("object", "shape"): self.shape_object}
        return F.normalize(heads[level, side](features.float()), dim=-1)


def info_nce(queries: torch.Tensor, keys: torch.Tensor, positive: torch.Tensor,
             key_valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Numerically stable InfoNCE (Algorithm 2) with several positives per row.

    queries (N, d), keys (K, d), positive (N, K) bool, key_valid (K,) bool (empty queue slots
    are not negatives). Every row needs at least one valid positive."""
    q, k = F.normalize(queries, dim=-1), F.normalize(keys, dim=-1)
    s = (q @ k.T) / temperature
    s = s.masked_fill(~key_valid[None], float("-inf"))
    s = s - s.max(1, keepdim=True).values.detach()
    log_p = s - s.exp().sum(1, keepdim=True).log()
    positive = positive & key_valid[None]
    return -torch.logsumexp(log_p.masked_fill(~positive, float("-inf")), 1).mean()


class Queue(nn.Module):
    """A FIFO of momentum features with an id each (label or instance), Algorithm 1."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("image", torch.zeros(size, dim))
        self.register_buffer("shape", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), NO_ID, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, image: torch.Tensor, shape: torch.Tensor, ids: torch.Tensor) -> None:
        """Dequeue the oldest, enqueue these (a batch larger than the queue keeps its last)."""
        size = len(self.ids)
        image, shape, ids = image[-size:], shape[-size:], ids[-size:]
        slots = (self.pointer + torch.arange(len(ids), device=ids.device)) % size
        self.image[slots], self.shape[slots], self.ids[slots] = image, shape, ids
        self.pointer.copy_((self.pointer + len(ids)) % size)


def with_queue(keys: torch.Tensor, ids: torch.Tensor, queue: Queue | None, side: str):
    """Keys and ids of this batch followed by the queue's `side` ("image" or "shape"); the
    batch alone without a queue (validation)."""
    if queue is None:
        return keys, ids
    return torch.cat([keys, getattr(queue, side)]), torch.cat([ids, queue.ids])


def contrast(queries, ids, keys, key_ids, temperature: float) -> torch.Tensor:
    """InfoNCE of queries against keys, positives = equal ids, empty slots ignored."""
    return info_nce(queries, keys, ids[:, None] == key_ids[None], key_ids != NO_ID, temperature)


def symmetric_loss(q_image, q_shape, k_image, k_shape, ids, queue: Queue | None,
                   temperature: float) -> torch.Tensor:
    """(image -> 3D + 3D -> image) / 2 against this batch's momentum keys and the queue."""
    shapes, shape_ids = with_queue(k_shape, ids, queue, "shape")
    images, image_ids = with_queue(k_image, ids, queue, "image")
    return 0.5 * (contrast(q_image, ids, shapes, shape_ids, temperature)
                  + contrast(q_shape, ids, images, image_ids, temperature))


def match_queries(attention: torch.Tensor, targets: torch.Tensor,
                  valid: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per object, Hungarian matching of ground-truth parts to queries by the cross-entropy
    of the part's normalised coverage (B, N, L) under each query's attention (B, M, L)."""
    cost = -(targets @ attention.clamp_min(1e-8).log().transpose(1, 2))  # (B, N, M)
    cost = cost.detach().cpu().numpy()
    matches = []
    for b, v in enumerate(valid.cpu().numpy()):
        parts = np.flatnonzero(v)
        rows, cols = linear_sum_assignment(cost[b, parts])
        matches.append((parts[rows], cols))
    return matches


class HCRTrainer(nn.Module):
    """HCR + its momentum copy + the queues. `losses(batch)` does one step of Algorithm 1
    (momentum update, keys, queue update) when gradients are on; without gradients
    (validation) it contrasts within the batch only and changes nothing."""

    def __init__(self, model: HCR):
        super().__init__()
        self.model = model
        self.momentum = copy.deepcopy(model).requires_grad_(False)
        c = model.config
        self.part_queue = Queue(c.queue_size, c.embed_dim)
        self.object_queue = Queue(c.queue_size, c.embed_dim)

    @torch.no_grad()
    def _momentum_update(self) -> None:
        m = self.model.config.momentum
        for slow, fast in zip(self.momentum.parameters(), self.model.parameters()):
            slow.mul_(m).add_(fast.detach(), alpha=1.0 - m)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """batch: tokens (B, L, C), cover (B, N, L) part coverage of the token grid, visible
        (B, N), exists (B, N), labels (B, N) label ids, shape (B, N, Dz) mean part latents,
        instance (B,) object ids."""
        c, model, slow = self.model.config, self.model, self.momentum
        training = torch.is_grad_enabled()
        if training:
            self._momentum_update()
        tokens, cover, visible = batch["tokens"], batch["cover"], batch["visible"]
        exists = batch["exists"]
        weights = cover / cover.sum(-1, keepdim=True).clamp_min(1e-8)
        x_parts = weights @ tokens  # (B, N, C)
        x_part, y_part = x_parts[visible], batch["shape"][visible]
        part_ids = batch["labels"][visible]
        shown = visible.float().unsqueeze(-1)
        x_obj = (x_parts * shown).sum(1) / shown.sum(1).clamp_min(1.0)
        present = exists.float().unsqueeze(-1)
        y_obj = (batch["shape"] * present).sum(1) / present.sum(1)

        with torch.no_grad():
            keys = {"part_image": slow.image_part(x_part), "part_shape": slow.shape_part(y_part),
                    "obj_image": slow.image_object(x_obj), "obj_shape": slow.shape_object(y_obj)}
            keys = {k: F.normalize(v, dim=-1) for k, v in keys.items()}
        part_queue = self.part_queue if training else None
        object_queue = self.object_queue if training else None

        q_part_shape = model.shape_part(y_part)
        l_part = symmetric_loss(model.image_part(x_part), q_part_shape, keys["part_image"],
                                keys["part_shape"], part_ids, part_queue, c.temperature)
        l_obj = symmetric_loss(model.image_object(x_obj), model.shape_object(y_obj),
                               keys["obj_image"], keys["obj_shape"], batch["instance"],
                               object_queue, c.temperature)

        # Part queries: matched queries learn their part's mask and its contrastive target.
        attention, pooled = model.part_queries(tokens)
        matches = match_queries(attention, weights, visible)
        b_index = torch.cat([torch.full((len(p),), b, dtype=torch.long)
                             for b, (p, _) in enumerate(matches)])
        p_index = torch.cat([torch.as_tensor(p, dtype=torch.long) for p, _ in matches])
        m_index = torch.cat([torch.as_tensor(m, dtype=torch.long) for _, m in matches])
        l_mask = -(weights[b_index, p_index] * attention[b_index, m_index].clamp_min(1e-8).log()
                   ).sum(-1).mean()
        queried = model.image_part(pooled[b_index, m_index])
        matched_shape = batch["shape"][b_index, p_index]
        matched_ids = batch["labels"][b_index, p_index]
        with torch.no_grad():
            matched_keys = F.normalize(slow.shape_part(matched_shape), dim=-1)
        keys_q, ids_q = with_queue(matched_keys, matched_ids, part_queue, "shape")
        l_query = contrast(queried, matched_ids, keys_q, ids_q, c.temperature)

        if training:
            self.part_queue.push(keys["part_image"], keys["part_shape"], part_ids)
            self.object_queue.push(keys["obj_image"], keys["obj_shape"], batch["instance"])
        hcr = c.lambda_part * l_part + c.lambda_obj * l_obj
        return {"loss": hcr + c.lambda_part * (l_mask + l_query), "hcr": hcr.detach(),
                "part": l_part.detach(), "object": l_obj.detach(),
                "query_mask": l_mask.detach(), "query_part": l_query.detach()}
