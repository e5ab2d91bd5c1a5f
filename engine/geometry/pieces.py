"""The connected pieces of a part's mesh and their surface areas.

A decoded part that should be one solid often comes back as one large piece plus specks of
"debris"; a part that is legitimately several pieces (a pair of wings) has pieces of similar
size. Both the fragmentation metric and the mesh clean-up read the pieces from here.
"""

from __future__ import annotations

import numpy as np

from engine.geometry.inside import face_components

DEBRIS_SHARE = 0.02  # a piece below this share of its part's area is debris


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def piece_areas(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label of every face's piece, area of every piece); pieces are numbered 0..P-1."""
    if len(faces) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    _, labels = np.unique(face_components(faces, len(vertices)), return_inverse=True)
    return labels, np.bincount(labels, weights=triangle_areas(vertices, faces))


def debris_share(vertices: np.ndarray, faces: np.ndarray, threshold: float = DEBRIS_SHARE) -> float:
    """Share of a part's surface area in pieces each smaller than `threshold` of the part's
    area (0 for an empty mesh and for a part of a few similar pieces)."""
    _, areas = piece_areas(vertices, faces)
    total = areas.sum()
    if total <= 0:
        return 0.0
    return float(areas[areas < threshold * total].sum() / total)


def mean_debris(parts) -> float:
    """Mean `debris_share` over parts (anything with vertices and faces); NaN for none."""
    shares = [debris_share(p.vertices, p.faces) for p in parts]
    return float(np.mean(shares)) if shares else float("nan")
