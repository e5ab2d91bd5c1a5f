"""FAISS inner-product index over unit vectors (cosine similarity).

Exact (flat) search up to `exact_limit` vectors; above it an IVF index (nlist ≈ 4·√n
clusters, `nprobe` of them searched), which FAISS can also run on a GPU. A GPU copy is used
when the installed FAISS has GPU support (faiss-gpu) and sees a GPU; faiss-cpu otherwise.
"""

from __future__ import annotations

import logging
import math

import numpy as np

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it picked

import faiss  # noqa: E402

from engine.retrieval.selection import normalise  # noqa: E402

EXACT_LIMIT = 50_000  # flat search of 50k × 1280 floats stays in milliseconds
NPROBE = 16


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    """Top-k cosine search over rows of `vectors` (n, d); rows of zero norm (features that do
    not exist, e.g. a part no view shows) are left out. Results are row numbers."""

    def __init__(self, vectors: np.ndarray, exact_limit: int = EXACT_LIMIT, use_gpu: bool = True):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"need a non-empty (n, d) array of vectors, got {vectors.shape}")
        self.rows = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)
        data = np.ascontiguousarray(normalise(vectors[self.rows]))
        n, d = data.shape
        self.dim = d
        if n <= exact_limit:
            index = faiss.IndexFlatIP(d)
            self.kind = "flat"
        else:
            nlist = int(4 * math.sqrt(n))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(data)
            index.nprobe = NPROBE
            self._quantizer = quantizer  # the IVF index refers to it
            self.kind = f"ivf{nlist}"
        index.add(data)
        if use_gpu and gpu_available():
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, 0, index)
            self.kind += "-gpu"
        self.index = index

    def __len__(self) -> int:
        return len(self.rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (q, d) -> scores (q, k) cosine, rows (q, k); -1 where fewer exist."""
        queries = np.ascontiguousarray(normalise(np.atleast_2d(queries)))
        if queries.shape[1] != self.dim:
            raise ValueError(f"query vectors have {queries.shape[1]} dimensions, the index "
                             f"{self.dim}")
        scores, found = self.index.search(queries, min(k, len(self.rows)))
        rows = np.where(found >= 0, self.rows[np.maximum(found, 0)], -1)
        if rows.shape[1] < k:
            pad = k - rows.shape[1]
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return scores, rows
