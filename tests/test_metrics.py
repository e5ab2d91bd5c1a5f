import time

import numpy as np
import pytest

from engine.data import primitives as P
from engine.geometry import metrics as M


def shifted_cube_chamfer(d):
    """Closed-form CD between the unit cube and the same cube shifted by d < 0.5 along x.

    Per direction: face at the trailing side is d away; the leading face lies inside the other
    cube, at min(d, distance to the square's border); the four side faces are 0 where they
    overlap and d - x on the uncovered strip. Symmetric, so CD is twice one direction.
    """
    leading = (1 - (1 - 2 * d) ** 3) / 6
    return 2 * (d + leading + 4 * d * d / 2) / 6


def cube(offset=0.0):
    c = P.box((1, 1, 1)).translated((offset, 0, 0))
    return c.vertices, c.faces


def test_identical_meshes():
    r = M.compare_meshes(cube(), cube(), samples=50_000)
    assert r["chamfer"] == 0.0 and r["fscore"] == 1.0


@pytest.mark.parametrize("d", [0.05, 0.2, 0.3])
def test_shifted_cube_chamfer_closed_form(d):
    samples = 100_000
    r = M.compare_meshes(cube(), cube(d), samples=samples)
    # Sampling error: matching points on overlapping faces are one sample spacing apart.
    spacing = 1.0 / np.sqrt(samples / 6.0)
    assert abs(r["chamfer"] - shifted_cube_chamfer(d)) < spacing


def test_shifted_cube_fscore_closed_form():
    # d = 0.2: trailing face fails, leading face passes where its border is < 0.1 away
    # (1 - 0.8^2), side faces pass except the 0.1-wide strip; precision = recall.
    r = M.compare_meshes(cube(), cube(0.2), samples=100_000)
    assert r["fscore"] == pytest.approx((0.36 + 4 * 0.9) / 6, abs=0.01)
    assert M.compare_meshes(cube(), cube(0.05), samples=20_000)["fscore"] == 1.0


def test_fscore_threshold_is_strict():
    a = np.zeros((1, 3))
    assert M.f_score(a, a + [0.1, 0, 0], tau=0.1) == 0.0
    assert M.f_score(a, a + [0.0999, 0, 0], tau=0.1) == 1.0


def test_box_halves_do_not_overlap_and_twins_fully_overlap():
    left, right = P.box((1, 1, 1)).translated((-0.5, 0, 0)), P.box((1, 1, 1)).translated((0.5, 0, 0))
    halves = [(left.vertices, left.faces), (right.vertices, right.faces)]
    assert M.part_overlap_iou(halves) == 0.0
    assert M.part_overlap_iou([halves[0], halves[0]]) == 1.0


def test_solid_voxelisation_fills_interior():
    occ = M.voxelize_solid(*cube())
    assert occ.sum() == 32 ** 3
    s = P.sphere(0.8, 64)
    expected = 4 / 3 * np.pi * (0.8 * 32) ** 3
    assert M.voxelize_solid(s.vertices, s.faces).sum() == pytest.approx(expected, rel=0.08)


def test_thin_and_overlapping_pieces_occupy_voxels():
    sheet = P.box((0.004, 1, 1))
    assert M.voxelize_solid(sheet.vertices, sheet.faces).sum() >= 32 * 32
    # Two overlapping closed pieces of one part union instead of cancelling.
    two = P.merge([P.box((1, 1, 1)), P.box((1, 1, 1)).translated((0.5, 0, 0))])
    assert M.voxelize_solid(two.vertices, two.faces).sum() == 48 * 32 * 32


def test_paper_sized_comparison_is_fast():
    s, c = P.sphere(0.8, 48), P.box((1.2, 1.2, 1.2))
    started = time.perf_counter()
    M.compare_meshes((s.vertices, s.faces), (c.vertices, c.faces), samples=M.PAPER_SAMPLES)
    assert time.perf_counter() - started < 4.0  # the figure (< 2 s) is printed by the benchmark


def test_debris_share_counts_small_pieces_only():
    import trimesh

    from engine.geometry.pieces import debris_share, piece_areas

    big = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    speck = trimesh.creation.icosphere(subdivisions=1, radius=0.03)
    speck.apply_translation([0.8, 0, 0])
    mesh = trimesh.util.concatenate([big, speck])
    labels, areas = piece_areas(mesh.vertices, mesh.faces)
    assert len(areas) == 2 and len(labels) == len(mesh.faces)
    share = debris_share(mesh.vertices, mesh.faces)
    assert 0 < share == pytest.approx(areas.min() / areas.sum())
    twins = trimesh.util.concatenate([big, big.copy().apply_translation([1.2, 0, 0])])
    assert debris_share(twins.vertices, twins.faces) == 0.0  # a pair of equal pieces is no debris
    assert debris_share(np.zeros((0, 3)), np.zeros((0, 3), int)) == 0.0


def test_part_overlap_iou_of_many_piece_parts_matches_one_piece_per_voxelisation():
    """Parts of many pieces (fragmented generations, more than one 64-bit word of pieces):
    the solid is the union of the pieces' solids (up to the randomly sampled surface voxels)."""
    import trimesh

    rng = np.random.default_rng(3)
    spheres = []
    for _ in range(70):  # more than one 64-bit word of pieces
        s = trimesh.creation.icosphere(subdivisions=1, radius=rng.uniform(0.05, 0.2))
        spheres.append(s.apply_translation(rng.uniform(-0.6, 0.6, 3)))
    whole = trimesh.util.concatenate(spheres)
    union = np.zeros((M.IOU_GRID,) * 3, bool)
    for s in spheres:
        union |= M.voxelize_solid(s.vertices, s.faces)
    solid = M.voxelize_solid(whole.vertices, whole.faces)
    assert np.count_nonzero(solid & union) / np.count_nonzero(solid | union) > 0.97  # 0.981


def test_a_part_thinner_than_every_voxel_column_is_its_surface_voxels():
    """No column centre crosses a tiny cube (a placeholder part): no interior, only the
    voxels its surface samples fall in."""
    import trimesh

    cube = trimesh.creation.box(extents=[0.01] * 3).apply_translation([0.031, 0.031, 0.0])
    occ = M.voxelize_solid(cube.vertices, cube.faces)
    assert 1 <= np.count_nonzero(occ) <= 8
