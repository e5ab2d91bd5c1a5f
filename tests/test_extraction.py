import math
from functools import lru_cache

import numpy as np
import pytest
import torch
import trimesh

from engine.geometry.metrics import compare_meshes
from engine.geometry.extraction import (RESCUE_MAX_LEVEL, ExtractedMesh, Grid, decimate,
                                        extract_dense, extract_hierarchical, extract_part)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These fields are a few cheap ops per chunk: on busy shared cores OpenMP's fork/join
    stalls cost more than a second thread saves (measured x4 on this suite)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Fields: SDFs, negative inside, as torch functions of (N, 3) float32 points.


def sphere(centre=(0.1, -0.05, 0.0), radius=0.5):
    return lambda p: (p - p.new_tensor(centre)).norm(dim=1) - radius


def thin_torus(p, major=0.6, minor=0.02):
    """A ring of tube radius 0.02 in a plane between the 16^3 grid's planes: thinner than a
    coarse cell, so only the band finds it."""
    return torch.hypot(torch.hypot(p[:, 0], p[:, 2]) - major, p[:, 1] - 0.06) - minor


def box(p, half=(0.45, 0.3, 0.6)):
    offset = p.abs() - p.new_tensor(half)
    return offset.clamp(min=0).norm(dim=1) + offset.max(dim=1).values.clamp(max=0)


def two_blobs(p):
    return torch.minimum(sphere((-0.5, 0.0, 0.0), 0.3)(p), sphere((0.55, 0.1, 0.0), 0.25)(p))


def tapered_rod(p):
    """A rod along x, radius 0.2 at x = -0.8 narrowing to 0.02 at x = 0.8 (a cone frustum,
    as an upper bound on the distance), its axis between the 16^3 grid's lines: coarse sign
    changes see only the thick end."""
    radius = 0.11 - 0.1125 * p[:, 0]
    across = torch.hypot(p[:, 1] - 0.06, p[:, 2] - 0.06) - radius
    return torch.maximum(across, p[:, 0].abs() - 0.8)


FIELDS = {"sphere": sphere(), "thin torus": thin_torus, "box": box, "two blobs": two_blobs,
          "tapered rod": tapered_rod}
CLOSED_FIELDS = ["sphere", "thin torus", "box", "two blobs"]


@lru_cache(maxsize=None)
def dense_128(name: str) -> ExtractedMesh:
    """Shared by the tests: dense 128^3 extraction is the slow part of this file."""
    return extract_dense(FIELDS[name], 128)


@lru_cache(maxsize=None)
def hierarchical_128(name: str, lipschitz: float = 1.0) -> ExtractedMesh:
    return extract_hierarchical(FIELDS[name], 128, coarse_resolution=16, lipschitz=lipschitz)


def chamfer(a: ExtractedMesh, b: ExtractedMesh) -> float:
    return compare_meshes((a.vertices, a.faces), (b.vertices, b.faces), samples=100_000)["chamfer"]


class SphereModule(torch.nn.Module):
    """A sphere SDF behind an identity linear layer: a field with parameters, like the
    decoder. Records the chunk sizes it is called with and checks what it receives."""

    def __init__(self, radius=0.5):
        super().__init__()
        self.linear = torch.nn.Linear(3, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(3))
            self.linear.bias.zero_()
        self.radius = radius
        self.calls = []

    def forward(self, points):
        assert points.dtype == torch.float32 and points.device == self.linear.weight.device
        assert not torch.is_grad_enabled()
        self.calls.append(len(points))
        return (self.linear(points).norm(dim=1) - self.radius)[:, None]  # (N, 1) like the decoder


def as_trimesh(mesh: ExtractedMesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices, mesh.faces)


def dense_points(resolution):
    return (resolution + 1) ** 3


@pytest.mark.parametrize("name", CLOSED_FIELDS)
def test_hierarchical_matches_dense_with_a_fraction_of_the_queries(name):
    dense, near = dense_128(name), hierarchical_128(name)
    assert dense.queried_points == dense_points(128)
    assert near.queried_points < 0.25 * dense.queried_points
    assert chamfer(dense, near) < 0.002


def test_without_the_band_a_thin_part_between_coarse_points_is_lost():
    """What the thin-torus case above guards: sign changes alone miss it at 16^3."""
    assert len(hierarchical_128("thin torus", lipschitz=0.0).faces) == 0
    assert len(dense_128("thin torus").faces) > 0


def test_a_surface_found_in_part_is_followed_to_its_whole():
    """Sign changes at 16^3 see only the rod's thick end; the refinement band and the final
    completion of crossing cells follow it down to the thin end."""
    near = hierarchical_128("tapered rod", lipschitz=0.0)
    assert chamfer(dense_128("tapered rod"), near) < 0.002
    assert near.vertices[:, 0].max() > 0.79


@pytest.mark.parametrize("name", CLOSED_FIELDS)
def test_meshes_are_closed_and_face_outward(name):
    mesh = hierarchical_128(name)
    assert mesh.vertices.dtype == np.float32 and mesh.vertices.shape[1] == 3
    assert mesh.faces.dtype == np.int32 and mesh.faces.shape[1] == 3
    solid = as_trimesh(mesh)
    assert solid.is_watertight and solid.is_winding_consistent
    assert solid.volume > 0
    assert solid.body_count == (2 if name == "two blobs" else 1)


def test_sphere_and_box_are_where_the_field_puts_them():
    mesh = extract_hierarchical(sphere(), 64, coarse_resolution=16)
    cell = Grid(64, 1.005).cell
    distance = np.linalg.norm(mesh.vertices - np.array([0.1, -0.05, 0.0]), axis=1)
    assert np.abs(distance - 0.5).max() < cell / 2
    assert as_trimesh(mesh).volume == pytest.approx(4 / 3 * math.pi * 0.5 ** 3, rel=0.01)

    cuboid = extract_hierarchical(box, 64, coarse_resolution=16).vertices
    assert np.abs(np.abs(cuboid).max(0) - [0.45, 0.3, 0.6]).max() < cell / 2


def test_module_field_is_queried_in_chunks_and_chunk_size_does_not_change_the_mesh():
    field = SphereModule()
    small = extract_hierarchical(field, 64, coarse_resolution=16, chunk=1000)
    assert max(field.calls) == 1000 and sum(field.calls) == small.queried_points
    field.calls.clear()
    large = extract_hierarchical(field, 64, coarse_resolution=16, chunk=1 << 20)
    assert len(field.calls) < 5
    np.testing.assert_array_equal(small.vertices, large.vertices)
    np.testing.assert_array_equal(small.faces, large.faces)
    dense = [extract_dense(field, 64, chunk=c) for c in (777, 65_536)]
    np.testing.assert_array_equal(dense[0].vertices, dense[1].vertices)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_field_gives_the_cpu_mesh():
    cpu = extract_hierarchical(SphereModule(), 128, coarse_resolution=16)
    cuda = extract_hierarchical(SphereModule().cuda(), 128, coarse_resolution=16)
    assert cuda.queried_points == cpu.queried_points
    assert chamfer(cpu, cuda) < 1e-4


def test_decimation_keeps_within_the_budget_and_the_shape():
    full = extract_dense(sphere(), 96)
    vertices, faces = decimate(full.vertices, full.faces, 2000)
    assert len(faces) <= 2000 and vertices.dtype == np.float32 and faces.dtype == np.int32
    assert as_trimesh(ExtractedMesh(vertices, faces, 0, {}, 0.0)).volume > 0
    # 100k samples put the noise floor of CD between two meshes of this sphere near 0.0055.
    assert chamfer(full, ExtractedMesh(vertices, faces, 0, {}, 0.0)) < 0.01
    assert decimate(full.vertices, full.faces, len(full.faces))[1] is full.faces

    budgeted = extract_hierarchical(sphere(), 96, coarse_resolution=24, max_faces=2000)
    assert len(budgeted.faces) <= 2000 and "decimate" in budgeted.seconds


@pytest.mark.parametrize("field", [lambda p: p.norm(dim=1) + 1.0,  # nothing inside the box
                                   lambda p: -torch.ones(len(p))],  # everything inside
                         ids=["all outside", "all inside"])
@pytest.mark.parametrize("extract", [extract_dense, extract_hierarchical])
def test_a_field_of_one_sign_gives_an_empty_mesh(field, extract):
    mesh = extract(field, 64)
    assert mesh.vertices.shape == (0, 3) and mesh.vertices.dtype == np.float32
    assert mesh.faces.shape == (0, 3) and mesh.faces.dtype == np.int32
    assert mesh.queried_points > 0


def test_progress_rises_to_one_and_can_cancel():
    fractions = []
    extract_hierarchical(sphere(), 64, coarse_resolution=16, chunk=4096, progress=fractions.append)
    assert len(fractions) > 5 and fractions[-1] == 1.0
    assert all(0 <= a <= b <= 1 for a, b in zip(fractions, fractions[1:]))

    class Cancelled(Exception):
        pass

    def cancel(fraction):
        raise Cancelled

    with pytest.raises(Cancelled):
        extract_dense(sphere(), 64, progress=cancel)


def test_resolution_must_be_coarse_times_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        extract_hierarchical(sphere(), 96, coarse_resolution=32)


# Decoder-like fields for extract_part: logits far steeper than an SDF.
SHEET_Y = -1.005 + 33 * Grid(64, 1.005).cell  # on a 64^3 grid plane, midway between 32^3 ones


def steep_sheet(p):
    """A sheet 0.008 thick whose values climb 3,000 per unit: from every 32^3 grid point the
    field reads over 80, far outside the band, so the band search alone loses it."""
    return 3000.0 * ((p[:, 1] - SHEET_Y).abs() - 0.004)


def faint_ring(p):
    """A wire the decoder holds just under 0.5 occupancy: positive everywhere, lowest (0.5)
    on a ring of radius 0.6 in the plane y = 0."""
    return 0.5 + 40.0 * torch.hypot(torch.hypot(p[:, 0], p[:, 2]) - 0.6, p[:, 1])


def test_extract_part_keeps_a_sheet_the_band_search_steps_over():
    assert len(extract_hierarchical(steep_sheet, 128, 32, lipschitz=150.0).faces) == 0
    mesh = extract_part(steep_sheet, 128, 32)
    assert mesh.level == 0.0 and len(mesh.faces) > 1000
    assert np.abs(mesh.vertices[:, 1] - SHEET_Y).max() < 0.01


def test_extract_part_cuts_a_sub_threshold_wire_above_its_lowest_value():
    mesh = extract_part(faint_ring, 128, 32)
    assert 0.5 < mesh.level < 2.0 and len(mesh.faces) > 100
    radius = np.hypot(mesh.vertices[:, 0], mesh.vertices[:, 2])
    assert np.abs(radius - 0.6).max() < 0.05 and np.abs(mesh.vertices[:, 1]).max() < 0.05


def test_extract_part_stays_empty_where_the_field_holds_no_part():
    mesh = extract_part(lambda p: faint_ring(p) + RESCUE_MAX_LEVEL, 128, 32)
    assert len(mesh.faces) == 0
