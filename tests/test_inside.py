import numpy as np
import pytest

from engine.data import primitives as P
from engine.data.categories import generate_asset
from engine.geometry.inside import points_inside


def winding_number(vertices, faces, points):
    """Generalised winding number (solid angles), an independent inside test for reference."""
    a, b, c = (vertices[faces[:, k]][None] - points[:, None] for k in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("qfi,qfi->qf", a, np.cross(b, c))
    den = la * lb * lc + np.einsum("qfi,qfi->qf", a, b) * lc + np.einsum("qfi,qfi->qf", b, c) * la \
        + np.einsum("qfi,qfi->qf", c, a) * lb
    return (2 * np.arctan2(det, den)).sum(1) / (4 * np.pi)


@pytest.mark.parametrize("name", ["chair", "mug", "scissors", "bucket"])
def test_agrees_with_winding_number_on_real_parts(name):
    rng = np.random.default_rng(0)
    for part in generate_asset(name, 4).parts:
        v = part.object_vertices()
        lo, hi = v.min(0), v.max(0)
        q = rng.uniform(lo - 0.05, hi + 0.05, (400, 3))
        expected = winding_number(v, part.faces, q) > 0.5
        np.testing.assert_array_equal(points_inside(v, part.faces, q), expected)


def test_sphere_and_overlapping_pieces():
    s = P.sphere(0.8, 64)
    q = np.random.default_rng(1).uniform(-1, 1, (20000, 3))
    r = np.linalg.norm(q, axis=1)
    got = points_inside(s.vertices, s.faces, q)
    clear = np.abs(r - 0.8) > 0.01  # the 64-gon sphere is within 1% of the true one
    np.testing.assert_array_equal(got[clear], (r < 0.8)[clear])
    two = P.merge([P.box((1, 1, 1)), P.box((1, 1, 1)).translated((0.5, 0, 0))])
    q = np.array([[0.3, 0.01, 0.02], [0.9, 0.1, 0.0], [1.1, 0, 0], [0, 0, 0.7]])
    assert points_inside(two.vertices, two.faces, q).tolist() == [True, True, False, False]


def test_empty_inputs():
    b = P.box((1, 1, 1))
    assert points_inside(b.vertices, b.faces, np.zeros((0, 3))).shape == (0,)
    assert not points_inside(np.zeros((0, 3)), np.zeros((0, 3), int), np.zeros((2, 3))).any()
