"""Queries over a part library, in one embedding space:

- an encoder's own features (the library's stored embeddings of that encoder), or
- the HCR space of a trained retriever: queries go through its image heads, library assets
  through its shape heads (their mean-pooled VAE latents), i.e. image -> 3D retrieval. At
  the object level the HCR score is blended with the encoder's own cosine (`joint_object`).

Queries: an image (object level: the encoder's pooled vector, under HCR joined with the
object head on the part queries' mean, `HCR.object_features`); an image + a part mask (part
level: tokens pooled in the mask); an image alone at part level (HCR's learned part queries,
each searched, hits merged); a text (CLIP text embedding against CLIP part embeddings when
the library has them; otherwise label match); an existing library part (its nearest parts in
other assets, for swaps).
Every hit names the asset, the part (None for object-level hits), its label (the category for
an object) and the cosine score.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import torch

from engine.retrieval.encoders import Encoded, ImageEncoder, coverage, pool
from engine.retrieval.hcr import HCR
from engine.retrieval.index import EXACT_LIMIT, VectorIndex
from engine.retrieval.library import LibraryError, PartLibrary
from engine.retrieval.selection import normalise

# Share of the HCR object score in the HCR space's object-level cosine; the rest is the
# encoder's own. The object head alone finds the query's category less often than the
# encoder (val recall@1 0.720 vs 0.923): the mean part latents it is aligned with carry
# little of the category (leave-one-out recall@1 0.71 among the library's assets, through
# the shape head). Blended at 0.2, chosen on the val split among 0.1-0.5: 0.952.
HCR_OBJECT_WEIGHT = 0.2


@dataclass(frozen=True)
class Hit:
    asset_id: str
    part: int | None  # part index within the asset; None for an object-level hit
    label: str  # the part's label, or the asset's category
    score: float

    def as_dict(self) -> dict:
        return asdict(self)


def merge_hits(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hits of several queries (q, n) -> the best `k` distinct rows, each at its best score."""
    best: dict[int, float] = {}
    for score, row in zip(scores.ravel(), rows.ravel()):
        if row >= 0 and score > best.get(int(row), -np.inf):
            best[int(row)] = float(score)
    ranked = sorted(best.items(), key=lambda item: -item[1])[:k]
    return (np.array([s for _, s in ranked], dtype=np.float32),
            np.array([r for r, _ in ranked], dtype=np.int64))


def joint_object(hcr: np.ndarray, encoder: np.ndarray) -> np.ndarray:
    """Object vectors of the HCR space from unit HCR object embeddings (n, E) and the
    encoder's vectors (n, D): [√w·hcr, √(1-w)·unit encoder vector], w = HCR_OBJECT_WEIGHT,
    so that an inner product is w·cos_HCR + (1-w)·cos_encoder and a cosine index searches
    the blend."""
    w = HCR_OBJECT_WEIGHT
    return np.concatenate([np.sqrt(w) * np.asarray(hcr, dtype=np.float32),
                           np.sqrt(1.0 - w) * normalise(encoder)], axis=-1)


def words(text: str) -> set[str]:
    return set(w for w in re.split(r"[^a-z0-9]+", text.lower()) if w)


class Searcher:
    """Search one library in the space of `retriever` (HCR) or else of `space` (an encoder key
    the library holds embeddings of; default: its first). `encoder` is needed for image
    queries and must be the space's encoder. HCR object search also needs the library's
    embeddings of the retriever's encoder (part search does not)."""

    def __init__(self, library: PartLibrary, encoder: ImageEncoder | None = None,
                 retriever: HCR | None = None, space: str | None = None,
                 exact_limit: int = EXACT_LIMIT):
        self.library, self.encoder, self.retriever = library, encoder, retriever
        if retriever is not None:
            self.space = retriever.config.encoder
            library_shape = library.info["shape"]["channels"]
            if retriever.config.latent_dim != library_shape:
                raise LibraryError(f"the retriever's 3D heads take {retriever.config.latent_dim}"
                                   f" latent channels, the library's latents have {library_shape}")
        else:
            self.space = space or (encoder.key if encoder else library.encoders[0])
            library.embeddings(self.space, "object")  # raises if the library lacks it
        if encoder is not None and encoder.key != self.space:
            raise LibraryError(f"searching the {self.space} space needs that encoder, "
                               f"got {encoder.key}")
        self.exact_limit = exact_limit
        self._indexes: dict[str, VectorIndex] = {}

    @property
    def name(self) -> str:
        return f"{self.space} + HCR" if self.retriever is not None else self.space

    def vectors(self, level: str) -> np.ndarray:
        """The library side of the space: (A, D) objects or (P, D) parts."""
        if self.retriever is None:
            return self.library.embeddings(self.space, level)
        features = torch.from_numpy(self.library.shape_features(level))
        shapes = self.retriever.embed(level, "shape", features).numpy()
        if level == "part":
            return shapes
        return joint_object(shapes, self.library.embeddings(self.space, "object"))

    def index(self, level: str) -> VectorIndex:
        if level not in self._indexes:
            self._indexes[level] = VectorIndex(self.vectors(level), self.exact_limit,
                                               keep_in=self.library.folder)
        return self._indexes[level]

    def _hits(self, level: str, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        lib, hits = self.library, []
        for score, row in zip(scores, rows):
            if row < 0:
                continue
            if level == "object":
                hits.append(Hit(lib.ids[row], None, lib.assets[row]["category"], float(score)))
            else:
                asset = int(lib.part_asset[row])
                hits.append(Hit(lib.ids[asset], int(lib.part_index[row]), lib.part_labels[row],
                                float(score)))
        return hits

    def _encoded(self, image: np.ndarray):
        if self.encoder is None:
            raise LibraryError("image queries need the encoder of the search space")
        return self.encoder.encode([image])

    def object_vector(self, encoded: Encoded) -> np.ndarray:
        """The object-level query vector of one encoded image (no mask)."""
        pooled = encoded.pooled[0].numpy()
        if self.retriever is None:
            return pooled
        x = self.retriever.object_features(encoded.tokens)
        return joint_object(self.retriever.embed("object", "image", x)[0].numpy(), pooled)

    def image_vector(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The query vector of an image (object level) or of an image region (part level)."""
        encoded = self._encoded(image)
        if mask is None:
            return self.object_vector(encoded)
        weights = coverage(np.asarray(mask, dtype=bool)[None], encoded.grid)
        if float(weights.sum()) == 0:
            raise ValueError("the part mask selects no pixels")
        x = pool(encoded.tokens[0], weights)
        if self.retriever is None:
            return x[0].numpy()
        return self.retriever.embed("part", "image", x)[0].numpy()

    def by_image(self, image: np.ndarray, k: int = 3, mask: np.ndarray | None = None) -> list[Hit]:
        """Object-level hits for an image, or part-level hits for the region `mask` (H, W)."""
        level = "object" if mask is None else "part"
        scores, rows = self.index(level).search(self.image_vector(image, mask)[None], k)
        return self._hits(level, scores[0], rows[0])

    def parts_in_image(self, image: np.ndarray, k: int = 3) -> list[Hit]:
        """Part-level hits for an image without masks: every learned part query of the HCR
        retriever searches, and each library part keeps its best score."""
        if self.retriever is None:
            raise LibraryError("part search without a mask needs an HCR retriever (--retriever)")
        encoded = self._encoded(image)
        _, pooled = self.retriever.part_queries(encoded.tokens)
        queries = self.retriever.embed("part", "image", pooled[0]).numpy()
        return self._hits("part", *merge_hits(*self.index("part").search(queries, k), k))

    def by_text(self, text: str, k: int = 3, text_encoder: ImageEncoder | None = None) -> list[Hit]:
        """Parts matching a text: CLIP text embedding against the library's part embeddings of
        that CLIP encoder when given, else word overlap with the part labels (Jaccard)."""
        if text_encoder is not None:
            vectors = self.library.embeddings(text_encoder.key, "part")
            query = text_encoder.encode_text([text])[0].numpy()
            index = VectorIndex(vectors, self.exact_limit)
            scores, rows = index.search(query[None], k)
            return self._hits("part", scores[0], rows[0])
        wanted = words(text)
        if not wanted:
            raise ValueError("empty text query")
        scored = []
        for row, label in enumerate(self.library.part_labels):
            have = words(label)
            score = 1.0 if label == text.strip() else len(wanted & have) / len(wanted | have)
            if score > 0:
                scored.append((score, row))
        scored.sort(key=lambda item: -item[0])  # stable: library order among equals
        return self._hits("part", np.array([s for s, _ in scored[:k]]),
                          np.array([r for _, r in scored[:k]], dtype=np.int64))

    def by_part(self, asset_id: str, part: int, k: int = 3) -> list[Hit]:
        """The nearest parts of other assets to one library part (swap candidates)."""
        row = self.library.part_row(asset_id, part)
        own = set(self.library.part_rows(self.library.row(asset_id)))
        vector = self.vectors("part")[row]
        if not np.linalg.norm(vector) > 0:
            raise LibraryError(f"{asset_id} part {part} has no {self.name} embedding (no view "
                               f"shows it)")
        scores, rows = self.index("part").search(vector[None], k + len(own))
        keep = [(s, r) for s, r in zip(scores[0], rows[0]) if r not in own][:k]
        return self._hits("part", np.array([s for s, _ in keep]),
                          np.array([r for _, r in keep], dtype=np.int64))
