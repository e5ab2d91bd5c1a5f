"""Edge topology of triangle meshes, computed in the engine for the add-on.

Blender stores a mesh's unique edges and, per face corner, the edge that leaves it. Left
to itself, it derives both from the faces on its UI thread (about as long as the rest of
building the mesh); results therefore carry them (bridge/PROTOCOL.md, "Parts") and the
engine computes them here, off the user's clock.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def triangle_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edges int32 (E, 2), corner_edges int32 (3F,)) of triangles `faces` int32 (F, 3).

    `edges` lists each undirected edge once, smaller vertex first, sorted; corner 3f+i
    (Blender's corner order) runs from faces[f, i] to faces[f, (i+1) % 3] along edge
    `corner_edges[3f+i]`. Degenerate corners (both ends one vertex) get an edge too, as
    in Blender's own calculation.
    """
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {faces.shape}")
    n = faces.size
    if n == 0:
        return np.empty((0, 2), np.int32), np.empty(0, np.int32)
    following = np.empty_like(faces)  # the next corner's vertex
    following[:, :2] = faces[:, 1:]
    following[:, 2] = faces[:, 0]
    low = np.minimum(faces, following).reshape(-1)
    high = np.maximum(faces, following, out=following).reshape(-1)
    if low.min() < 0:
        raise ValueError("face indices must be non-negative")
    vertex_bits = max(int(high.max()), 1).bit_length()
    corner_bits = max(n - 1, 1).bit_length()
    if 2 * vertex_bits + corner_bits > 63:  # too big to pack: the general, slower way
        return _edges_by_unique(low, high)
    # One sort of 64-bit words (low vertex | high vertex | corner) groups the corners by
    # edge and carries each corner along, so no argsort or searchsorted is needed.
    key = low.astype(np.int64)
    key <<= vertex_bits
    key |= high
    key <<= corner_bits
    key |= np.arange(n, dtype=np.int64)
    key.sort()
    corners = key & ((1 << corner_bits) - 1)
    key >>= corner_bits  # now the edge (low, high) of each sorted corner
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    corner_edges = np.empty(n, dtype=np.int32)
    corner_edges[corners] = np.cumsum(first, dtype=np.int32) - 1
    pairs = key[first]
    edges = np.empty((len(pairs), 2), dtype=np.int32)
    edges[:, 0] = pairs >> vertex_bits
    edges[:, 1] = pairs & ((1 << vertex_bits) - 1)
    return edges, corner_edges


def _edges_by_unique(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    key = (low.astype(np.int64) << 32) | high
    pairs, inverse = np.unique(key, return_inverse=True)
    edges = np.stack([pairs >> 32, pairs & 0xFFFFFFFF], axis=1).astype(np.int32)
    return edges, inverse.reshape(-1).astype(np.int32)


def with_edges(parts: list) -> list:
    """`parts` (bridge Parts) with `edges` and `corner_edges` filled in where missing.

    Returns copies, so a pipeline's own Part objects stay as they were; parts that share
    one faces array (linked duplicates) share one computation.
    """
    done: dict = {}
    out = []
    for part in parts:
        if part.edges is None or part.corner_edges is None:
            key = id(part.faces)
            if key not in done:
                done[key] = triangle_edges(part.faces)
            edges, corner_edges = done[key]
            part = dataclasses.replace(part, edges=edges, corner_edges=corner_edges)
        out.append(part)
    return out
