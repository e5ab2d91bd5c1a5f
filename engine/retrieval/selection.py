"""Choosing library exemplars: spherical k-means in embedding space, one medoid per cluster
(PartRAG §4.1: the most diverse exemplars, chosen by k-means to maximise coverage)."""

from __future__ import annotations

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def spherical_kmeans_medoids(features: np.ndarray, k: int, iterations: int = 25,
                             seed: int = 0) -> np.ndarray:
    """Indices (sorted) of `k` medoids of `features` (n, d) under cosine similarity.

    k-means++ seeding on 1 - cos, then Lloyd steps on the sphere (centroid = normalised sum of
    its members); a cluster that empties is re-seeded with the point worst served by the
    current centroids. Each cluster contributes the member closest to its centroid."""
    x = normalise(features)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"cannot choose {k} exemplars among {n} candidates")
    if k == n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n))]
    distance = 1.0 - x @ x[chosen[0]]
    for _ in range(k - 1):
        weights = np.maximum(distance, 0.0)
        pick = int(rng.choice(n, p=weights / weights.sum())) if weights.sum() > 0 else \
            int(rng.choice(np.setdiff1d(np.arange(n), chosen)))
        chosen.append(pick)
        distance = np.minimum(distance, 1.0 - x @ x[pick])
    centroids = x[chosen]
    assign = np.full(n, -1)
    for _ in range(iterations):
        similarity = x @ centroids.T
        new = similarity.argmax(1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, new, x)
        counts = np.bincount(new, minlength=k)
        worst = np.argsort(similarity.max(1))  # least covered first
        taken = set()
        for c in np.flatnonzero(counts == 0):
            point = next(int(p) for p in worst if int(p) not in taken)
            taken.add(point)
            sums[c] = x[point]
        centroids = normalise(sums)
        if np.array_equal(new, assign):
            break
        assign = new
    similarity = x @ centroids.T
    assign = similarity.argmax(1)
    medoids = set()
    for c in range(k):
        members = np.flatnonzero(assign == c)
        if len(members):
            medoids.add(int(members[similarity[members, c].argmax()]))
    # Clusters that ended empty or share a medoid: fill with the least covered candidates.
    for point in np.argsort((x @ x[sorted(medoids)].T).max(1)):
        if len(medoids) == k:
            break
        medoids.add(int(point))
    return np.array(sorted(medoids))


def coverage(features: np.ndarray, selected: np.ndarray) -> float:
    """Mean over candidates of the cosine similarity to their nearest selected exemplar."""
    x = normalise(features)
    return float((x @ x[selected].T).max(1).mean())
