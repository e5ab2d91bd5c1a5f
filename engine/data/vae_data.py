"""VAE training examples: a cache of surface samples and exactly labelled query points.

Exact occupancy labels cost tens of milliseconds per part, so they are computed once per
object into `<cache>/<split>/<name>.npz` (atomically, skipped when present) and training
draws random subsets of that cache at every step.

Everything is in the OBJECT frame, as the public model encodes parts. Per object the cache
holds, for every part k:
    surface_points/normals[k]   area-weighted samples on part k (encoder input pool)
    near queries                part-k surface samples + Gaussian noise (two scales)
    box queries                 uniform in part k's bounding box, expanded
and for the whole object: uniform queries in [-1.05, 1.05]^3. Every query is labelled
against every part (`inside`, (N, parts)), so one cache serves both
    part examples   (PART VAE): one part's points, occupancy of that part;
    object examples (Geom-Seg VAE): all parts' points with a part code, occupancy of the union.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.data.cache import check_options, save_npz
from engine.data.dataset import load_asset, read_manifest
from engine.geometry.metrics import sample_surface
from engine.geometry.inside import points_inside

CACHE_VERSION = 1
NEAR, BOX, UNIFORM = 0, 1, 2  # query kinds
UNIFORM_BOUND = 1.05


@dataclass(frozen=True)
class CacheOptions:
    surface_per_part: int = 8192
    near_per_part: int = 8192  # half at each noise scale
    near_sigmas: tuple[float, float] = (0.005, 0.03)
    box_per_part: int = 2048
    box_margin: float = 0.05  # added on every side of the part's bounding box
    uniform: int = 8192


@dataclass(frozen=True)
class SampleOptions:
    """What one training example draws from the cache."""
    points: int = 2048  # encoder input points
    queries: int = 4096
    near_fraction: float = 0.5
    box_fraction: float = 0.25  # the rest is uniform in the cube


def object_seed(name: str) -> int:
    """A stable seed per object name (Python's hash() is salted per process)."""
    return int.from_bytes(name.encode(), "little") % (2**63)


def cache_object(folder: Path, options: CacheOptions, seed: int) -> dict[str, np.ndarray]:
    """Surface pools and labelled queries of one dataset object (see the module docstring)."""
    rng = np.random.default_rng(seed)
    parts = load_asset(folder).parts
    meshes = [(p.object_vertices(), p.faces) for p in parts]
    surfaces = [sample_surface(v, f, options.surface_per_part, rng) for v, f in meshes]
    areas = []
    queries, query_part, query_kind = [], [], []
    for k, (v, f) in enumerate(meshes):
        tri = v[f]
        areas.append(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]),
                                          axis=1).sum())
        near = sample_surface(v, f, options.near_per_part, rng).points.astype(np.float64)
        sigma = np.repeat(options.near_sigmas, [options.near_per_part // 2,
                                                options.near_per_part - options.near_per_part // 2])
        near += rng.normal(size=near.shape) * sigma[:, None]
        lo, hi = v.min(0) - options.box_margin, v.max(0) + options.box_margin
        box = rng.uniform(lo, hi, (options.box_per_part, 3))
        queries += [near, box]
        query_part += [np.full(len(near) + len(box), k)]
        query_kind += [np.full(len(near), NEAR), np.full(len(box), BOX)]
    queries.append(rng.uniform(-UNIFORM_BOUND, UNIFORM_BOUND, (options.uniform, 3)))
    query_part.append(np.full(options.uniform, -1))
    query_kind.append(np.full(options.uniform, UNIFORM))
    queries = np.concatenate(queries).astype(np.float32)
    # Label the float32 points actually stored, so labels and queries agree exactly.
    inside = np.stack([points_inside(v, f, queries) for v, f in meshes], axis=1)
    return {
        # float16 (spacing <= 0.0005 in the unit cube) halves the largest arrays; encoder
        # input only, never labelled.
        "surface_points": np.stack([s.points for s in surfaces]).astype(np.float16),
        "surface_normals": np.stack([s.normals for s in surfaces]).astype(np.float16),
        "part_areas": np.array(areas),
        "queries": queries,
        "query_part": np.concatenate(query_part).astype(np.int8),
        "query_kind": np.concatenate(query_kind).astype(np.int8),
        "inside": inside,
    }


def _write_cached(job: tuple[Path, Path, CacheOptions]) -> Path:
    folder, target, options = job
    return save_npz(target, cache_object(folder, options, object_seed(folder.name)))


def split_names(data: Path, split: str) -> list[str]:
    manifest = read_manifest(data)
    return [record["name"] for record in manifest["splits"][split]]


def build_cache(data: Path, cache: Path, split: str, options: CacheOptions = CacheOptions(),
                workers: int = 2, progress: bool = True) -> list[Path]:
    """Cache every object of a split (resumable: finished files are kept); returns the paths
    in manifest order."""
    data, cache = Path(data), Path(cache)
    check_options(cache, {"version": CACHE_VERSION, **asdict(options)})
    (cache / split).mkdir(parents=True, exist_ok=True)
    names = split_names(data, split)
    paths = [cache / split / f"{name}.npz" for name in names]
    jobs = [(data / split / name, path, options) for name, path in zip(names, paths)
            if not path.is_file()]
    with tqdm(total=len(names), initial=len(names) - len(jobs), unit="obj",
              desc=f"VAE cache {split}", disable=not progress) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                _write_cached(job)
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_cached, jobs):
                    bar.update()
    return paths


@dataclass
class CachedObject:
    surface_points: np.ndarray  # (parts, S, 3) float16
    surface_normals: np.ndarray  # (parts, S, 3) float16
    part_areas: np.ndarray  # (parts,)
    queries: np.ndarray  # (N, 3)
    query_part: np.ndarray  # (N,) part a query was drawn around, -1 for uniform
    query_kind: np.ndarray  # (N,) NEAR, BOX or UNIFORM
    inside: np.ndarray  # (N, parts) bool

    @property
    def num_parts(self) -> int:
        return len(self.part_areas)


def _draw(rng: np.random.Generator, pool: np.ndarray, count: int) -> np.ndarray:
    """`count` indices from `pool`, without repetition while the pool is large enough."""
    return pool[rng.choice(len(pool), count, replace=count > len(pool))]


class VAEExamples:
    """Training examples drawn from a split's cache; batches are a pure function of the rng."""

    def __init__(self, paths: list[Path], sample: SampleOptions = SampleOptions()):
        if not paths:
            raise ValueError("no cached objects")
        self.sample = sample
        self.objects = []
        for path in paths:
            with np.load(path) as arrays:
                self.objects.append(CachedObject(**{k: arrays[k] for k in arrays.files}))
        self.parts = [(i, k) for i, obj in enumerate(self.objects) for k in range(obj.num_parts)]
        self._pools = [self._query_pools(obj) for obj in self.objects]

    @staticmethod
    def _query_pools(obj: CachedObject) -> dict:
        """Index pools per (kind, part) and per kind over all parts."""
        pools = {}
        for kind in (NEAR, BOX):
            of_kind = obj.query_kind == kind
            pools[kind] = np.flatnonzero(of_kind)
            for k in range(obj.num_parts):
                pools[kind, k] = np.flatnonzero(of_kind & (obj.query_part == k))
        pools[UNIFORM] = np.flatnonzero(obj.query_kind == UNIFORM)
        return pools

    def _query_index(self, rng: np.random.Generator, pools: dict, part: int | None) -> np.ndarray:
        total = self.sample.queries
        near = int(round(total * self.sample.near_fraction))
        box = int(round(total * self.sample.box_fraction))
        key = (lambda kind: kind) if part is None else (lambda kind: (kind, part))
        return np.concatenate([_draw(rng, pools[key(NEAR)], near),
                               _draw(rng, pools[key(BOX)], box),
                               _draw(rng, pools[UNIFORM], total - near - box)])

    def part_example(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
        """One part of one object: its surface points (P, 6), queries (M, 3), occupancy (M,)."""
        i, k = self.parts[index]
        obj = self.objects[i]
        s = rng.choice(obj.surface_points.shape[1], self.sample.points, replace=False)
        q = self._query_index(rng, self._pools[i], k)
        return {"points": np.concatenate([obj.surface_points[k, s], obj.surface_normals[k, s]],
                                         1).astype(np.float32),
                "queries": obj.queries[q], "occupancy": obj.inside[q, k].astype(np.float32)}

    def object_example(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
        """A whole object: area-weighted points (P, 7) whose last channel is the part's code
        (the parts present evenly spaced in [-1, 1], randomly permuted per example, as
        geomseg_vae.part_codes), their part labels, queries and the occupancy of the union."""
        obj = self.objects[index]
        part = rng.choice(obj.num_parts, self.sample.points,
                          p=obj.part_areas / obj.part_areas.sum())
        s = rng.integers(obj.surface_points.shape[1], size=self.sample.points)
        present, rank = np.unique(part, return_inverse=True)  # tiny parts may draw no point
        n = len(present)
        codes = rng.permutation(np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1))[rank]
        q = self._query_index(rng, self._pools[index], None)
        return {"points": np.concatenate([obj.surface_points[part, s], obj.surface_normals[part, s],
                                          codes[:, None]], 1).astype(np.float32),
                "part_labels": part.astype(np.int64),
                "queries": obj.queries[q], "occupancy": obj.inside[q].any(1).astype(np.float32)}

    def part_batch(self, rng: np.random.Generator, batch: int) -> dict[str, torch.Tensor]:
        """`batch` random parts (PART VAE): points (B, P, 6), queries (B, M, 3), occupancy (B, M)."""
        picks = rng.integers(len(self.parts), size=batch)
        return collate([self.part_example(rng, int(j)) for j in picks])

    def object_batch(self, rng: np.random.Generator, batch: int) -> dict[str, torch.Tensor]:
        """`batch` random whole objects (Geom-Seg VAE): points (B, P, 7), part_labels (B, P),
        queries (B, M, 3), occupancy (B, M)."""
        picks = rng.integers(len(self.objects), size=batch)
        return collate([self.object_example(rng, int(j)) for j in picks])


def collate(examples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.stack([e[key] for e in examples])) for key in examples[0]}
