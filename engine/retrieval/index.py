"""FAISS inner-product index over unit vectors (cosine similarity).

Exact (flat) search up to `exact_limit` vectors; above it an IVF index (nlist ≈ 4·√n
clusters, `nprobe` of them searched), which FAISS can also run on a GPU. A GPU copy is used
when the installed FAISS has GPU support (faiss-gpu) and sees a GPU; faiss-cpu otherwise.
Training an IVF index takes seconds (21 s for 100,000 × 1,280 here), so given a folder the
trained index is kept there as index-<digest of the vectors>.faiss for the next process.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it picked

import faiss  # noqa: E402

from engine.files import write_atomic  # noqa: E402
from engine.retrieval.selection import normalise  # noqa: E402

log = logging.getLogger(__name__)
EXACT_LIMIT = 50_000  # flat search of 50k × 1280 floats stays in milliseconds
NPROBE = 16


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    """Top-k cosine search over rows of `vectors` (n, d); rows of zero norm (features that do
    not exist, e.g. a part no view shows) are left out. Results are row numbers."""

    def __init__(self, vectors: np.ndarray, exact_limit: int = EXACT_LIMIT, use_gpu: bool = True,
                 keep_in: Path | None = None):
        """`keep_in`: a folder where a trained IVF index is kept for later processes (a
        folder that cannot be written only costs the training next time)."""
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
            index.add(data)
        else:
            index = self._ivf(data, keep_in)
            self.kind = f"ivf{index.nlist}"
        if use_gpu and gpu_available():
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, 0, index)
            self.kind += "-gpu"
        self.index = index

    @staticmethod
    def _ivf(data: np.ndarray, keep_in: Path | None):
        """The IVF index of `data`. Training (the clustering) is the slow part, so the
        trained, still empty index (its centroids: 6.5 MB for 100,000 × 1,280) is kept in
        `keep_in` and read back when these very vectors come again; adding them is fast."""
        path = None
        if keep_in is not None:
            path = Path(keep_in) / f"index-{hashlib.sha1(data.tobytes()).hexdigest()[:16]}.faiss"
        if path is not None and path.is_file():
            index = faiss.read_index(str(path))
        else:
            n, d = data.shape
            # FAISS's Python wrapper keeps the quantizer alive with the index
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, int(4 * math.sqrt(n)),
                                       faiss.METRIC_INNER_PRODUCT)
            index.train(data)
            if path is not None:
                try:
                    write_atomic(path, lambda tmp: faiss.write_index(index, str(tmp)))
                except OSError as error:
                    log.warning("cannot keep the search index in %s: %s", keep_in, error)
        index.nprobe = NPROBE
        index.add(data)
        return index

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
