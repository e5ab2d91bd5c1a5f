"""Edge topology computed by the engine for the add-on (engine/geometry/topology.py)."""

import numpy as np
import pytest

from addon_geometry import grid_mesh
from bridge.protocol import Part
from engine.geometry import topology
from engine.geometry.topology import triangle_edges, with_edges


def reference_edges(faces: np.ndarray):
    """The edges as a set of (smaller, larger) pairs, and each corner's pair."""
    following = np.roll(faces, -1, axis=1)
    pairs = np.stack([np.minimum(faces, following), np.maximum(faces, following)], -1)
    pairs = pairs.reshape(-1, 2)
    return set(map(tuple, pairs.tolist())), pairs


def check(faces: np.ndarray):
    edges, corner_edges = triangle_edges(faces)
    assert edges.dtype == corner_edges.dtype == np.int32
    assert edges.shape[1] == 2 and corner_edges.shape == (faces.size,)
    unique, pairs = reference_edges(faces)
    assert len(edges) == len(unique) and set(map(tuple, edges.tolist())) == unique
    assert np.array_equal(edges[corner_edges], pairs)  # corner 3f+i: faces[f,i] -> next
    assert (edges[:, 0] <= edges[:, 1]).all()
    return edges, corner_edges


def test_grid_edges_in_blender_corner_order():
    _, faces = grid_mesh(20)
    edges, _ = check(faces)
    assert len(edges) == 3 * 19 * 19 + 2 * 19


@pytest.mark.parametrize("seed", range(4))
def test_any_triangle_soup_even_degenerate(seed):
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 30, (200, 3), dtype=np.int32)  # repeats, duplicates, flips
    faces[:5, 1] = faces[:5, 0]  # degenerate corners get an edge, as in Blender
    check(faces)


def test_meshes_too_big_to_pack_take_the_general_path():
    check(np.array([[0, 1, 2], [2, 1, 2**30], [2**30, 5, 0]], dtype=np.int32))


def test_packed_and_general_paths_agree():
    _, faces = grid_mesh(12)
    pairs = reference_edges(faces)[1]
    general = topology._edges_by_unique(pairs[:, 0], pairs[:, 1])
    packed = triangle_edges(faces)
    assert all(np.array_equal(a, b) for a, b in zip(packed, general))


def test_with_edges_fills_copies_and_shares_duplicates():
    vertices, faces = grid_mesh(5)
    parts = [Part(vertices, faces, np.eye(4), f"p_{n}", n, "same") for n in range(3)]
    parts[2] = Part(vertices, faces, np.eye(4), "p_2", 2, None, *triangle_edges(faces))
    done = with_edges(parts)
    assert parts[0].edges is None  # the pipeline's parts are left as they were
    assert done[0].edges is done[1].edges  # one faces array, one computation
    assert done[2].edges is parts[2].edges  # already there: kept
    assert np.array_equal(done[0].corner_edges, done[2].corner_edges)
