"""`python -m engine bench library`: the part library at 10,000 and 100,000 (figures of the
batch issue), on this machine.

- Search: part embeddings at N, made from the library's real part embeddings (random
  mixtures of two real ones, `synthetic_embeddings`); queries are other such mixtures.
  Per-query latency of top-3 for exact (flat) search and for VectorIndex as the engine builds
  it (flat up to EXACT_LIMIT, IVF above), its build and reopen time (the trained index kept
  beside the library, read back by the next process) and recall@10 against exact search.
- Writing: N assets streamed through LibraryWriter (the library's real assets, repeated under
  new ids), with the peak memory numpy and Python allocate while writing (tracemalloc) and the
  size on disk: memory stays bounded as N grows.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

QUERIES = 200


def synthetic_embeddings(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` unit vectors between the real ones: each the normalised mixture a·x_i + (1 − a)·x_j
    of two random real part embeddings, a uniform in [0, 1] (a continuous spread, harder for
    an IVF index than points clustered around the real ones)."""
    from engine.retrieval.selection import normalise

    real = normalise(real[np.linalg.norm(real, axis=1) > 0].astype(np.float32))
    i, j = rng.integers(0, len(real), n), rng.integers(0, len(real), n)
    a = rng.uniform(0, 1, (n, 1)).astype(np.float32)
    return normalise(a * real[i] + (1 - a) * real[j])


def search_figures(real: np.ndarray, n: int, rng: np.random.Generator) -> dict:
    from engine.retrieval.index import VectorIndex  # first: it quietens FAISS's loader

    import faiss

    data = synthetic_embeddings(real, n, rng)
    queries = synthetic_embeddings(real, QUERIES, rng)
    with tempfile.TemporaryDirectory(prefix="partsmith-bench-index-") as kept:
        started = time.perf_counter()
        index = VectorIndex(data, keep_in=Path(kept))
        build = time.perf_counter() - started
        started = time.perf_counter()
        VectorIndex(data, keep_in=Path(kept))  # the next process: the trained index read back
        reopen = time.perf_counter() - started
    exact = faiss.IndexFlatIP(data.shape[1])
    exact.add(data)

    def per_query(search) -> float:
        times = []
        for q in queries:
            started = time.perf_counter()
            search(q[None])
            times.append(time.perf_counter() - started)
        return float(np.median(times)) * 1000

    flat_ms = per_query(lambda q: exact.search(q, 3))
    index_ms = per_query(lambda q: index.search(q, 3))
    _, truth = exact.search(queries, 10)
    _, found = index.search(queries, 10)
    recall = float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]))
    return {"n": n, "kind": index.kind, "build_s": build, "reopen_s": reopen, "flat_ms": flat_ms,
            "index_ms": index_ms, "recall10": recall}


def write_figures(library, n: int, folder: Path) -> dict:
    from engine.retrieval.library_writer import LibraryWriter

    records = list(library.iter_records())
    dims = {key: library.info["encoders"][e]["dim"] for e, key in enumerate(library.encoders)}
    tracemalloc.start()
    started = time.perf_counter()
    with LibraryWriter(folder, dims, library.info["shape"], library.info["stored_views"]) as w:
        for i in tqdm(range(n), desc=f"writing {n} assets", unit="asset"):
            w.add(replace(records[i % len(records)], id=f"copy{i:06d}"))
        w.finish()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"n": n, "seconds": seconds, "peak_mb": peak / 1e6, "size_mb": size / 1e6}


def print_bench_library(library_folder: Path, sizes=(10_000, 100_000),
                        write_sizes=(1_000, 10_000)) -> int:
    import torch

    from engine.retrieval.library import PartLibrary

    library = PartLibrary.load(library_folder)
    real = np.asarray(library.embeddings(library.encoders[0], "part"), np.float32)
    rng = np.random.default_rng(0)
    print(f"bench library: {library_folder} ({len(library)} assets, {library.num_parts} parts), "
          f"{torch.get_num_threads()} threads; search embeddings made from its "
          f"{library.encoders[0]} part embeddings")
    print("| part embeddings | index | build s | reopen s | exact top-3 ms | index top-3 ms | "
          "recall@10 |\n| --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        r = search_figures(real, n, rng)
        print(f"| {n:,} | {r['kind']} | {r['build_s']:.2f} | {r['reopen_s']:.2f} | "
              f"{r['flat_ms']:.2f} | "
              f"{r['index_ms']:.2f} | {r['recall10']:.3f} |", flush=True)
    print("| assets written | seconds | assets/s | peak memory while writing MB | size MB |\n"
          "| --- | --- | --- | --- | --- |")
    for n in write_sizes:
        with tempfile.TemporaryDirectory(prefix="partsmith-bench-library-") as tmp:
            r = write_figures(library, n, Path(tmp))
        print(f"| {n:,} | {r['seconds']:.1f} | {n / r['seconds']:.0f} | {r['peak_mb']:.1f} | "
              f"{r['size_mb']:.0f} |", flush=True)
    return 0
