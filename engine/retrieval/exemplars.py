"""The exemplar bank: what retrieval hands the DiT for each library asset, in compact form.

Per asset: a unit-norm search key (the encoder's pooled vector, averaged over its views), a
few image tokens (its first view's tokens average-pooled to `grid`² cells), `tokens_per_part`
latent tokens of every part (the first ones: the VAE orders tokens by farthest point
sampling, so they span the part), cycled over the parts to `max_parts` slots so every
exemplar gives the context the same number of tokens, and each part's mean latent with its
label (for labelling generated parts). Written into a bundle's rag/ as one .npz.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.data.cache import save_npz

BANK_NAME = "bank.npz"


def exemplar_latents(part_latents: np.ndarray, tokens_per_part: int, max_parts: int) -> np.ndarray:
    """(parts, T, C) -> (max_parts · tokens_per_part, C): the first tokens of each part,
    parts repeated in order to fill `max_parts` slots."""
    if part_latents.shape[1] < tokens_per_part:
        raise ValueError(f"parts have {part_latents.shape[1]} tokens, fewer than "
                         f"tokens_per_part={tokens_per_part}")
    slots = np.arange(max_parts) % len(part_latents)
    return part_latents[slots, :tokens_per_part].reshape(-1, part_latents.shape[-1])


@dataclass
class Hit:
    index: int  # row in the bank
    asset_id: str
    score: float  # cosine similarity of the search keys


@dataclass
class ExemplarBank:
    names: np.ndarray  # (N,) asset ids
    keys: np.ndarray  # (N, D) float32 unit-norm search keys
    image_tokens: np.ndarray  # (N, grid², Cc) float16
    latents: np.ndarray  # (N, max_parts · tokens_per_part, Cz) float16
    part_means: np.ndarray  # (N, max_parts, Cz) float32, zero past part_count
    part_count: np.ndarray  # (N,) int
    labels: np.ndarray  # (N, max_parts) str, "" past part_count

    def __len__(self) -> int:
        return len(self.names)

    def search(self, key: torch.Tensor | np.ndarray, k: int,
               exclude: str | None = None) -> list[Hit]:
        """Top-k assets by inner product with a unit-norm key; `exclude` drops one asset id
        (an object retrieving itself in training)."""
        if k < 0:
            raise ValueError(f"top-k must be at least 0, got {k}")
        scores = self.keys @ np.asarray(key, dtype=np.float32).reshape(-1)
        if exclude is not None:
            scores = np.where(self.names == exclude, -np.inf, scores)
        k = min(k, len(self) - (exclude is not None and exclude in set(self.names)))
        order = np.argsort(-scores, kind="stable")[:k]
        return [Hit(int(i), str(self.names[i]), float(scores[i])) for i in order]

    def context(self, hits: list[Hit]) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, grid², Cc) image tokens and (k, T_r, Cz) latents of the hits, float32."""
        index = [h.index for h in hits]
        return (torch.from_numpy(self.image_tokens[index].astype(np.float32)),
                torch.from_numpy(self.latents[index].astype(np.float32)))

    def nearest_labels(self, means: np.ndarray, hits: list[Hit]) -> list[str]:
        """Label of the nearest (cosine) part among the hits' parts for every row of
        `means` (n, Cz)."""
        rows = [(h.index, p) for h in hits for p in range(self.part_count[h.index])]
        if not rows:
            raise ValueError("no retrieved parts to take labels from")
        candidates = np.stack([self.part_means[i, p] for i, p in rows])
        unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
        best = (unit(means) @ unit(candidates).T).argmax(1)
        return [str(self.labels[rows[b]]) for b in best]

    def save(self, path: str | Path) -> None:
        save_npz(path, dict(names=self.names.astype(str), keys=self.keys.astype(np.float16),
                            image_tokens=self.image_tokens.astype(np.float16),
                            latents=self.latents.astype(np.float16),
                            part_means=self.part_means.astype(np.float16),
                            part_count=self.part_count, labels=self.labels.astype(str)))

    @classmethod
    def load(cls, path: str | Path) -> ExemplarBank:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no exemplar bank at {path}")
        with np.load(path) as a:
            keys = a["keys"].astype(np.float32)
            keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-8)
            return cls(a["names"], keys, a["image_tokens"], a["latents"],
                       a["part_means"].astype(np.float32), a["part_count"], a["labels"])


def spread_subset(keys: np.ndarray, size: int) -> np.ndarray:
    """Indices of `size` keys chosen greedily farthest (cosine) from those already chosen,
    starting from the one nearest the mean: a bank that covers the embedding space."""
    if size >= len(keys):
        return np.arange(len(keys))
    chosen = [int(np.argmax(keys @ keys.mean(0)))]
    nearest = keys @ keys[chosen[0]]
    for _ in range(size - 1):
        nearest[chosen] = np.inf
        chosen.append(int(np.argmin(nearest)))
        nearest = np.maximum(nearest, keys @ keys[chosen[-1]])
    return np.sort(np.array(chosen))
