"""Closest points on a triangle mesh, without a spatial-index package: each query is
measured exactly against the `candidates` triangles whose centroids are nearest to it
(pykdtree), which holds the true closest triangle unless the mesh mixes tiny and huge
triangles right there."""

from __future__ import annotations

import numpy as np
from pykdtree.kdtree import KDTree

CANDIDATES = 16


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point to each p on its triangle (a, b, c), all (N, 3): the Voronoi-region
    test of Ericson's Real-Time Collision Detection §5.1.5, vectorised."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    tiny = 1e-30
    # Inside the face by default, then every edge and corner region overrides.
    denom = np.maximum(va + vb + vc, tiny)
    out = a + ab * (vb / denom)[:, None] + ac * (vc / denom)[:, None]
    on_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    w = (d4 - d3) / np.maximum((d4 - d3) + (d5 - d6), tiny)
    out = np.where(on_bc[:, None], b + w[:, None] * (c - b), out)
    on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    w = d2 / np.maximum(d2 - d6, tiny)
    out = np.where(on_ac[:, None], a + w[:, None] * ac, out)
    on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    w = d1 / np.maximum(d1 - d3, tiny)
    out = np.where(on_ab[:, None], a + w[:, None] * ab, out)
    out = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
    out = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)
    return out


class ClosestPoints:
    """A mesh prepared for closest-point queries."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        self.triangles = np.asarray(vertices, np.float64)[np.asarray(faces)]
        self.centroids = KDTree(self.triangles.mean(1))

    def query(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """points (N, 3) -> (closest points (N, 3), distances (N,))."""
        points = np.asarray(points, np.float64)
        k = min(CANDIDATES, len(self.triangles))
        _, index = self.centroids.query(points, k=k)
        index = index.reshape(len(points), k)
        tri = self.triangles[index.reshape(-1)]
        repeated = np.repeat(points, k, axis=0)
        closest = closest_on_triangles(repeated, tri[:, 0], tri[:, 1], tri[:, 2])
        distance = np.linalg.norm(closest - repeated, axis=1).reshape(len(points), k)
        best = distance.argmin(1)
        rows = np.arange(len(points))
        return closest.reshape(len(points), k, 3)[rows, best], distance[rows, best]
