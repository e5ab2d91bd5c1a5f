"""Decoded part meshes made fit for an artist: only the pieces that matter, closed,
outward-facing, and within a face budget.

Marching cubes on a learned field gives closed surfaces wound outward (normals from negative
to positive values), but also specks of debris beside the real pieces, the inward-facing
walls of interior cavities, and often far more triangles than a part needs. Quadric
decimation (fast_simplification) keeps features but does not check that a collapse keeps
the surface manifold: on thin sheets it leaves coincident face pairs and edges shared by
four faces, which `drop_bad_faces` and `one_vertex_per_fan` take apart again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from engine.geometry.extraction import decimate
from engine.geometry.pieces import DEBRIS_SHARE, debris_share, piece_areas

# A piece other than the largest stays only if it also has this share of the largest
# piece's area. Separate pieces of one part come in comparable sizes (in the shipped
# library's ground truth the smallest is a landing-gear strut at a third of the largest
# wheel); the fragments that fall off a decoded part are mostly far smaller.
SHARE_OF_LARGEST = 0.2


@dataclass(frozen=True)
class CleanMesh:
    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside
    pieces: int  # connected pieces
    debris_removed: float  # share of the input's area dropped: debris and cavity walls
    raw_debris: float  # the input's share of area in pieces below DEBRIS_SHARE: what the model made


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the vertices that faces use, renumbered in their order."""
    used = np.zeros(len(vertices), bool)
    used[faces] = True
    number = np.cumsum(used, dtype=np.int64) - 1
    return vertices[used], number[faces].astype(np.int32)


def equal_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group number of every row, equal rows sharing one, and one row index per group (a
    sort of the columns: several times faster than np.unique with axis=0)."""
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    starts = np.ones(len(rows), bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    group = np.empty(len(rows), np.int64)
    group[order] = np.cumsum(starts) - 1
    return group, order[starts]


def weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One vertex per position, without the faces that collapse. Marching cubes repeats a
    vertex where the field is exactly zero at a grid point, with slivers around it."""
    group, first = equal_rows(vertices)
    if len(first) == len(vertices):
        return vertices, faces
    return vertices[first], drop_bad_faces(group[faces].astype(np.int32))


def drop_bad_faces(faces: np.ndarray) -> np.ndarray:
    """Without faces that repeat a vertex, and with the copies of a face that appears more
    than once cancelled in opposite pairs (a sheet collapsed to zero thickness encloses
    nothing): an odd count leaves one face, wound the way most were. Every edge keeps the
    parity of its face count, so no edge of a closed surface is left with one face."""
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])
                  & (faces[:, 2] != faces[:, 0])]
    inversions = ((faces[:, 0] > faces[:, 1]).astype(np.int64) + (faces[:, 0] > faces[:, 2])
                  + (faces[:, 1] > faces[:, 2]))
    winding = 1 - 2 * (inversions % 2)  # +1: an even permutation of the sorted vertices
    group, _ = equal_rows(np.sort(faces, axis=1))
    net = np.bincount(group, weights=winding).astype(np.int64)
    wanted = np.flatnonzero((net[group] % 2 == 1) & (winding == np.sign(net[group])))
    _, first = np.unique(group[wanted], return_index=True)
    return faces[np.sort(wanted[first])]


def edges_of(tail: np.ndarray, head: np.ndarray, vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edge number of every half-edge tail -> head, and the faces on each edge."""
    key = np.minimum(tail, head).astype(np.int64) * vertices + np.maximum(tail, head)
    _, edge, uses = np.unique(key, return_inverse=True, return_counts=True)
    return edge.reshape(-1), uses


def linked_groups(links: np.ndarray, count: int) -> tuple[int, np.ndarray]:
    """Number of groups and group of each of `count` nodes joined by `links` (2, L)."""
    graph = coo_matrix((np.ones(links.shape[1]), (links[0], links[1])), shape=(count, count))
    return connected_components(graph, directed=False)


def one_vertex_per_fan(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give every fan of faces around a vertex its own copy of the vertex: where two sheets
    touch along an edge (four faces on it) or at a point, each sheet gets its own vertices,
    and the edge becomes two edges of two faces. A manifold mesh comes back as it is.

    Corners (a face's use of a vertex) are joined across every edge that two faces share
    with opposite directions; a connected group of corners is a fan. At an edge of more than
    two faces, faces in one fan at the edge's lower vertex are joined at its upper vertex
    too, so that both ends split the edge's faces into the same sheets. Where a sheet folds
    back onto itself no split separates it: a split that would leave an edge with one face
    (a hole) is not made, and that edge keeps its four faces.
    """
    corners = 3 * len(faces)
    tail = faces.reshape(-1)
    head = faces[:, [1, 2, 0]].reshape(-1)  # half-edge h runs from corner h to corner after[h]
    after = np.arange(corners).reshape(-1, 3)[:, [1, 2, 0]].reshape(-1)
    edge, uses = edges_of(tail, head, len(vertices))

    twice = np.flatnonzero(uses[edge] == 2)
    first, second = twice[np.argsort(edge[twice], kind="stable")].reshape(-1, 2).T
    first, second = (half[tail[first] == head[second]] for half in (first, second))
    links = np.concatenate([[first, after[second]], [after[first], second]], axis=1)
    _, fan = linked_groups(links, corners)

    crowded = np.flatnonzero(uses[edge] > 2)
    lower_first = tail[crowded] < head[crowded]
    lower = np.where(lower_first, crowded, after[crowded])
    upper = np.where(lower_first, after[crowded], crowded)
    _, sheet = np.unique(edge[crowded] * corners + fan[lower], return_inverse=True)
    leader = np.empty(len(crowded), np.int64)
    leader[sheet] = upper
    fans, fan = linked_groups(np.concatenate([links, [upper, leader[sheet]]], axis=1), corners)
    used = np.count_nonzero(np.bincount(tail))
    if fans == used:  # one fan per vertex already
        return vertices, faces

    copy_edge, copy_uses = edges_of(fan, fan[after], fans)
    opened = copy_uses[copy_edge] == 1
    whole = np.zeros(len(vertices), bool)
    whole[tail[opened]] = whole[head[opened]] = True
    kept, fan = np.unique(np.where(whole[tail], fans + tail, fan), return_inverse=True)
    if len(kept) == used:
        return vertices, faces
    corner_of_fan = np.empty(len(kept), np.int64)
    corner_of_fan[fan] = np.arange(corners)
    return vertices[tail[corner_of_fan]], fan.reshape(-1, 3).astype(np.int32)


def signed_volumes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Each face's signed tetrahedron volume with the origin: summed over a closed piece,
    the enclosed volume, negative when the piece faces inward."""
    tri = np.asarray(vertices, np.float64)[faces]
    return np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6


def keep_pieces(vertices: np.ndarray, faces: np.ndarray,
                share_of_largest: float = SHARE_OF_LARGEST) -> tuple[np.ndarray, int, float]:
    """The faces of the pieces worth keeping, how many pieces that is, and the share of the
    area dropped.

    Always the largest piece; any other that is not debris (DEBRIS_SHARE of the total area)
    and has `share_of_largest` of the largest, so a pair of wings or four wheels stay. Never a
    piece enclosing negative volume: from marching cubes that is the inward-facing wall of a
    cavity inside a solid, which nobody sees and flipping would only double the solid's skin.
    """
    if len(faces) == 0:
        return faces, 0, 0.0
    labels, areas = piece_areas(vertices, faces)
    volumes = np.bincount(labels, weights=signed_volumes(vertices, faces), minlength=len(areas))
    keep = ((areas >= DEBRIS_SHARE * areas.sum()) & (areas >= share_of_largest * areas.max())
            & (volumes > 0))
    keep[areas.argmax()] = True
    return faces[keep[labels]], int(keep.sum()), float(areas[~keep].sum() / areas.sum())


def clean_part(vertices: np.ndarray, faces: np.ndarray, max_faces: int | None) -> CleanMesh:
    """A part's marching-cubes mesh -> its kept pieces, decimated to at most `max_faces`
    (None: full resolution). A closed input stays closed."""
    vertices, faces = weld(np.asarray(vertices, np.float32), np.asarray(faces, np.int32))
    raw_debris = debris_share(vertices, faces)
    faces, pieces, dropped = keep_pieces(vertices, faces)
    if max_faces is not None and len(faces) > max_faces:
        vertices, faces = decimate(*compact(vertices, faces), max_faces)
        vertices, faces = one_vertex_per_fan(*compact(vertices, drop_bad_faces(faces)))
        # Collapses can cut a piece in two: drop only the specks and inside-out bits.
        faces, pieces, more = keep_pieces(vertices, faces, share_of_largest=0.0)
        dropped += (1 - dropped) * more
    return CleanMesh(*compact(vertices, faces), pieces, dropped, raw_debris)
