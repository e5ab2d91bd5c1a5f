import numpy as np
import pytest
import trimesh

from engine.data import primitives as P

SHAPES = {
    "box": lambda: P.box((1, 2, 3)),
    "frustum": lambda: P.cylinder(0.5, 1.0, 24, radius_top=0.2),
    "sphere": lambda: P.sphere(1.0),
    "torus": lambda: P.torus(1.0, 0.2),
    "tube": lambda: P.tube(P.arc(1.0, 0, np.pi, 12), 0.05),
    "extrude": lambda: P.extrude([(0, 0), (2, 0), (2, 1), (1, 0.4), (0, 1)], 0.3),
    "rounded_box": lambda: P.rounded_box((2, 1, 0.5), 0.2),
    "vessel": lambda: P.lathe([(0, 0), (1, 0), (1, 2), (0.9, 2), (0.9, 0.1), (0, 0.1)]),
    "mirrored": lambda: P.box((1, 2, 3)).rotated("x", 0.3).scaled((1, -1, 1)),
}


@pytest.mark.parametrize("name", SHAPES)
def test_primitives_are_closed_and_outward(name):
    mesh = SHAPES[name]()
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent
    assert tm.volume > 0
    assert mesh.faces.dtype == np.int32


def test_volumes_match_closed_forms():
    assert P.signed_volume(*_vf(P.box((1, 2, 3)))) == pytest.approx(6.0)
    # A 64-gon cylinder is within 0.2 % of the true cylinder volume.
    assert P.signed_volume(*_vf(P.cylinder(0.5, 2.0, 64))) == pytest.approx(np.pi * 0.25 * 2, rel=2e-3)
    assert P.signed_volume(*_vf(P.extrude([(0, 0), (2, 0), (2, 1), (1, 0.4), (0, 1)], 0.5))) == pytest.approx(
        (2.0 - 0.5 * 2 * 0.6) * 0.5)


def test_lathe_rejects_open_profile():
    with pytest.raises(ValueError, match="radius 0"):
        P.lathe([(0.5, 0), (1, 1), (0, 1)])


def test_triangulation_of_concave_polygon_covers_its_area():
    star = [(np.cos(a) * r, np.sin(a) * r)
            for a, r in zip(np.linspace(0, 2 * np.pi, 10, endpoint=False), [1, 0.4] * 5)]
    tris = np.asarray(star)[P.triangulate_polygon(star)]
    ab, ac = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    areas = 0.5 * (ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0])
    assert len(tris) == 8 and np.all(areas > 0)
    assert areas.sum() == pytest.approx(10 * 0.5 * 0.4 * np.sin(2 * np.pi / 10))


def _vf(mesh):
    return mesh.vertices, mesh.faces
