"""Seams between edited and frozen parts (PartRAG §3.5). A decoded part rarely meets its
neighbours exactly. First, contacts the part had before the edit are restored: when the
edited part has moved off a frozen neighbour it touched (surfaces within CONTACT), it is
translated by the mean of the gaps to those neighbours, a few times at most (a seat that
floats above its legs comes back down onto them). Then the vertices that lie within
SEAM_BAND of a frozen part are moved onto that part's surface, and the ring of vertices
around them is smoothed (uniform Laplacian, the snapped vertices held) so the snap leaves no
step. Only the edited meshes change; the frozen parts are read, never written."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pykdtree.kdtree import KDTree

from bridge.protocol import Part
from engine.geometry.closest import ClosestPoints

CONTACT = 0.02  # surfaces closer than this touch (object units; the object spans about 2)
SEAM_BAND = 0.04  # vertices this close to a frozen part are snapped onto it
REATTACH_ROUNDS = 3
SMOOTH_RING = 2 * SEAM_BAND  # vertices this close to a snapped one are smoothed
SMOOTH_ITERATIONS = 3
SMOOTH_WEIGHT = 0.5


def to_local(part: Part, points: np.ndarray) -> np.ndarray:
    """Object-frame points -> the part's local frame (its transform is rigid)."""
    rotation, translation = part.transform[:3, :3], part.transform[:3, 3]
    return ((points - translation) @ rotation).astype(np.float32)


def neighbours(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges of a triangle mesh, both directions: (from, to) vertex arrays, unique."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.concatenate([edges, edges[:, ::-1]]), axis=0)
    return edges[:, 0], edges[:, 1]


def smooth(vertices: np.ndarray, faces: np.ndarray, movable: np.ndarray) -> np.ndarray:
    """Uniform Laplacian steps on the `movable` vertices only."""
    source, target = neighbours(faces)
    degree = np.bincount(source, minlength=len(vertices)).astype(np.float64)
    for _ in range(SMOOTH_ITERATIONS):
        total = np.zeros_like(vertices)
        np.add.at(total, source, vertices[target])
        mean = total / np.maximum(degree, 1)[:, None]
        step = movable & (degree > 0)
        vertices[step] += SMOOTH_WEIGHT * (mean[step] - vertices[step])
    return vertices


def gap(points: np.ndarray, surface: ClosestPoints) -> tuple[float, np.ndarray]:
    """Smallest distance from `points` to a surface, and the vector that closes it."""
    closest, distance = surface.query(points)
    nearest = int(distance.argmin())
    return float(distance[nearest]), closest[nearest] - points[nearest]


def boxes_apart(a: np.ndarray, b: np.ndarray, distance: float) -> bool:
    """Whether two point sets' bounding boxes are more than `distance` apart (then so are
    their surfaces)."""
    return bool(((a.min(0) - b.max(0)) > distance).any() or ((b.min(0) - a.max(0)) > distance).any())


def reattach(part: Part, before: Part, frozen: list[Part]) -> Part:
    """`part` translated back onto the frozen parts `before` touched and it no longer does."""
    old = before.object_vertices()
    nearby = [f for f in frozen if not boxes_apart(old, f.object_vertices(), CONTACT)]
    surfaces = [ClosestPoints(f.object_vertices(), f.faces) for f in nearby]
    touched = [s for s in surfaces if gap(old, s)[0] <= CONTACT]
    points = part.object_vertices()
    moved = False
    for _ in range(REATTACH_ROUNDS):
        gaps = [gap(points, s) for s in touched]
        broken = [vector for distance, vector in gaps if distance > CONTACT]
        if not broken:
            break
        points = points + np.mean(broken, axis=0)
        moved = True
    if not moved:
        return part
    transform = part.transform.copy()
    transform[:3, 3] += points[0] - part.object_vertices()[0]
    return replace(part, transform=transform)


def close_seams(edited: list[Part], frozen: list[Part],
                before: list[Part] | None = None) -> list[Part]:
    """Edited parts put back onto the frozen parts their `before` versions touched (when
    given), with the vertices near a frozen part snapped onto it; a part nothing touches
    comes back as it was (same arrays)."""
    if not frozen:
        return edited
    if before is not None:
        edited = [reattach(part, old, frozen) for part, old in zip(edited, before)]
    vertices = [p.object_vertices() for p in frozen]
    offsets = np.cumsum([0] + [len(v) for v in vertices[:-1]])
    corners = np.concatenate(vertices)
    faces = np.concatenate([p.faces + o for p, o in zip(frozen, offsets)])
    surface = ClosestPoints(corners, faces)
    # A point within the band of a triangle lies within band + longest edge of one of its
    # corners: only those vertices are measured exactly.
    tri = corners[faces]
    reach = SEAM_BAND + np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max()
    corner_tree = KDTree(corners)
    out = []
    for part in edited:
        points = part.object_vertices()
        coarse, _ = corner_tree.query(points, k=1)
        candidates = np.flatnonzero(coarse < reach)
        if len(candidates) == 0:
            out.append(part)
            continue
        closest, distance = surface.query(points[candidates])
        near = distance < SEAM_BAND
        if not near.any():
            out.append(part)
            continue
        snapped = candidates[near]
        points[snapped] = closest[near]
        ring, _ = KDTree(points[snapped]).query(points, k=1)
        movable = ring < SMOOTH_RING
        movable[snapped] = False
        points = smooth(points, part.faces, movable)
        out.append(replace(part, vertices=to_local(part, points)))
    return out
