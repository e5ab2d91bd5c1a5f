"""Retrieval figures (`python -m engine eval retrieval`): every view of every object of a
split queries the library.

- object level: recall@1 / recall@5 = a hit among the top 1 / 5 assets has the query's
  category (queries carry no mask: the image alone);
- part level: precision@5 = fraction of the top-5 parts with the query part's label, the
  query being the image + that part's mask (every part a view shows);
- with an HCR retriever, also mask-free part search (its learned part queries): precision@5
  = fraction of the top-5 parts whose label is one of the query object's labels.

One row per search space: each encoder the library holds embeddings of, and the retriever's
space (its encoder's features through the HCR heads, against the library's 3D latents; at the
object level blended with the encoder's own cosine, search.joint_object). Queries are
formed by the searcher's own functions, so the figures are those of `library search`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.data.vae_data import split_names
from engine.retrieval.encoders import ImageEncoder, coverage, pool
from engine.retrieval.index import VectorIndex
from engine.retrieval.library import PartLibrary
from engine.retrieval.search import Searcher, merge_hits
from engine.retrieval.views import part_masks, read_views

OBJECT_K, PART_K = 5, 5


@dataclass
class Query:
    category: str
    labels: list[str]
    image: np.ndarray
    mask: np.ndarray  # part-index mask
    name: str


def load_queries(data: Path, split: str, limit: int | None) -> list[Query]:
    queries = []
    for name in split_names(data, split)[:limit]:
        folder = Path(data) / split / name
        meta = json.loads((folder / "meta.json").read_text())
        images, masks = read_views(folder)
        queries += [Query(meta["category"], meta["labels"], image, mask, name)
                    for image, mask in zip(images, masks)]
    return queries


def query_vectors(searcher: Searcher, encoder: ImageEncoder, query: Query):
    """Object vector (the searcher's own), per visible part (index, vector), and the learned
    part-query vectors (HCR only), from one encoding of the image."""
    encoded = encoder.encode([query.image])
    whole = searcher.object_vector(encoded)
    hcr = searcher.retriever
    masks = part_masks(query.mask, len(query.labels))
    shown = [k for k in range(len(masks)) if masks[k].any()]
    parts = pool(encoded.tokens[0], coverage(masks[shown], encoded.grid))
    if hcr is None:
        return whole, shown, parts.numpy(), None
    _, pooled = hcr.part_queries(encoded.tokens)
    return (whole, shown, hcr.embed("part", "image", parts).numpy(),
            hcr.embed("part", "image", pooled[0]).numpy())


def evaluate_space(searcher: Searcher, encoder: ImageEncoder, queries: list[Query],
                   progress: bool = True) -> dict:
    lib = searcher.library
    categories = np.array([a["category"] for a in lib.assets])
    labels = np.array(lib.part_labels)
    objects, parts, free = searcher.index("object"), searcher.index("part"), []
    recall1, recall5, precision = [], [], []
    for query in tqdm(queries, desc=searcher.name, unit="img", disable=not progress):
        whole, shown, part_vectors, query_parts = query_vectors(searcher, encoder, query)
        _, rows = objects.search(whole[None], OBJECT_K)
        same = categories[rows[0][rows[0] >= 0]] == query.category
        recall1.append(bool(same[:1].any()))
        recall5.append(bool(same.any()))
        _, rows = parts.search(part_vectors, PART_K)
        for k, found in zip(shown, rows):
            precision.append(float(np.mean(labels[found[found >= 0]] == query.labels[k])))
        if query_parts is not None:
            _, top = merge_hits(*parts.search(query_parts, PART_K), PART_K)
            free.append(float(np.mean(np.isin(labels[top], query.labels))))
    row = {"space": searcher.name, "queries": len(queries), "object_recall@1": np.mean(recall1),
           "object_recall@5": np.mean(recall5), "part_precision@5": np.mean(precision),
           "part_queries": len(precision)}
    if free:
        row["maskfree_part_precision@5"] = np.mean(free)
    return {k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()}


def latency(encoder: ImageEncoder, library_folder: Path, dims: list[int], repeats: int = 20,
            assets: int = 10_000, seed: int = 0) -> dict:
    """Median times: encoding one 256² image with `encoder`; top-3 among `assets` random
    vectors of each width in `dims` (one query at a time); loading the library."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (256, 256, 4), dtype=np.uint8)
    encoder.encode([image])  # warm-up
    encode = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode([image])
        encode.append(time.perf_counter() - started)
    search = {}
    for dim in dims:
        index = VectorIndex(rng.normal(size=(assets, dim)).astype(np.float32))
        times = []
        for q in rng.normal(size=(10 * repeats, dim)).astype(np.float32):
            started = time.perf_counter()
            index.search(q[None], 3)
            times.append(time.perf_counter() - started)
        search[f"{dim}-d {index.kind}"] = 1000 * float(np.median(times))
    load = []
    for _ in range(5):
        started = time.perf_counter()
        library = PartLibrary.load(library_folder)
        load.append(time.perf_counter() - started)
    return {"encode_ms": 1000 * float(np.median(encode)), "encoder": encoder.key,
            "search_ms": search, "search_assets": assets, "load_ms": 1000 * float(np.median(load)),
            "library_assets": len(library)}


def query_sheet(searcher: Searcher, queries: list[Query], path: Path, count: int = 8) -> Path:
    """`count` queries of distinct categories (first view), each with its top-3 assets'
    thumbnails, as a contact sheet."""
    from engine.render.sheet import contact_sheet

    picked, seen = [], set()
    for query in queries:
        if query.category not in seen:
            picked.append(query)
            seen.add(query.category)
        if len(picked) == count:
            break
    images, captions = [], []
    for query in picked:
        images.append(query.image)
        captions.append(f"query: {query.category}")
        for hit in searcher.by_image(query.image, 3):
            images.append(searcher.library.thumbnail(searcher.library.row(hit.asset_id)))
            captions.append(f"{hit.label} {hit.score:.2f}")
    contact_sheet(images, path, captions, columns=4, tile=128)
    return path
