"""Part meshes for an artist: debris and cavity walls dropped, real pieces kept, closed and
outward-facing, within a face budget; decode_parts applies it and parts.json reports it."""

import json

import numpy as np
import pytest
import torch
import trimesh

from engine.cli import main
from engine.geometry.metrics import chamfer_distance, sample_surface
from engine.geometry.cleanup import (SHARE_OF_LARGEST, clean_part, one_vertex_per_fan,
                                     signed_volumes)
from engine.geometry.extraction import bench_scene, decimate, extract_hierarchical
from engine.geometry.pieces import piece_areas
from engine.pipelines.decode import ExtractSettings, decode_parts
from engine.pipelines.outputs import write_generation
from engine.pipelines.partrag import Generation


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Cheap analytic fields: OpenMP's fork/join on busy shared cores costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Fields: SDFs, negative inside, as torch functions of (N, 3) float32 points.


def sphere(centre, radius):
    return lambda p: (p - p.new_tensor(centre)).norm(dim=1) - radius


def union(*fields):
    return lambda p: torch.stack([field(p) for field in fields]).min(0).values


BIG = sphere((0.1, 0.0, 0.0), 0.6)
SPECKS = [sphere((-0.8, 0.75, 0.3), 0.06), sphere((0.85, -0.8, 0.0), 0.05),
          sphere((-0.7, -0.75, -0.6), 0.07)]


def marching_cubes(field, resolution=64):
    mesh = extract_hierarchical(field, resolution, 16)
    return mesh.vertices, mesh.faces


def radii(vertices, centre=(0.1, 0.0, 0.0)):
    return np.linalg.norm(vertices - np.array(centre), axis=1)


def assert_closed_and_outward(vertices, faces):
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    labels, _ = piece_areas(vertices, faces)
    assert (np.bincount(labels, weights=signed_volumes(vertices, faces)) > 0).all()


def test_specks_go_and_the_sphere_stays():
    vertices, faces = marching_cubes(union(BIG, *SPECKS))
    assert len(piece_areas(vertices, faces)[1]) == 4
    clean = clean_part(vertices, faces, None)
    assert clean.pieces == 1
    assert np.abs(radii(clean.vertices) - 0.6).max() < 0.01
    specks = 0.06 ** 2 + 0.05 ** 2 + 0.07 ** 2  # areas go with the radius squared
    assert clean.debris_removed == pytest.approx(specks / (specks + 0.6 ** 2), rel=0.1)
    assert clean.raw_debris == pytest.approx(clean.debris_removed)  # every speck is below 2 %
    assert_closed_and_outward(clean.vertices, clean.faces)


def test_equal_pieces_stay_and_small_ones_go_by_their_share_of_the_largest():
    pair = union(sphere((-0.5, 0.0, 0.0), 0.35), sphere((0.5, 0.0, 0.0), 0.35))
    clean = clean_part(*marching_cubes(pair), None)
    assert clean.pieces == 2 and clean.debris_removed == 0.0
    for share, kept in ((1.5 * SHARE_OF_LARGEST, 2), (0.5 * SHARE_OF_LARGEST, 1)):
        small = sphere((0.55, 0.0, 0.0), 0.4 * share ** 0.5)  # area share of the 0.4 sphere
        clean = clean_part(*marching_cubes(union(sphere((-0.4, 0.0, 0.0), 0.4), small)), None)
        assert clean.pieces == kept


def test_cavity_walls_go():
    hollow = lambda p: torch.maximum(BIG(p), -sphere((0.1, 0.0, 0.0), 0.45)(p))
    vertices, faces = marching_cubes(hollow)
    labels, _ = piece_areas(vertices, faces)
    assert sorted(np.sign(np.bincount(labels, weights=signed_volumes(vertices, faces)))) == [-1, 1]
    clean = clean_part(vertices, faces, None)
    assert clean.pieces == 1 and np.abs(radii(clean.vertices) - 0.6).max() < 0.01


def test_decimation_keeps_the_budget_the_shape_and_a_closed_outward_surface():
    """Sphere, box and a ring of tube radius 0.02 (about a cell at 128^3)."""
    vertices, faces = marching_cubes(bench_scene, 128)
    cell = 2 * 1.005 / 128
    rng = np.random.default_rng(0)
    full, again = (sample_surface(vertices, faces, 20_000, rng).points for _ in range(2))
    for budget in (8_000, 2_000):
        clean = clean_part(vertices, faces, budget)
        assert len(clean.faces) <= budget and clean.pieces == 3
        assert_closed_and_outward(clean.vertices, clean.faces)
        points = sample_surface(clean.vertices, clean.faces, 20_000, rng).points
        assert np.abs(bench_scene(torch.from_numpy(points)).numpy()).mean() < cell / 10
        # no further from the full mesh than a second sampling of the full mesh itself
        assert chamfer_distance(full, points) < 1.1 * chamfer_distance(full, again)


def stacked_sheets(p):
    """Three wavy sheets 0.02 thick, 0.04 apart: less than two cells at 64^3, where quadric
    collapses fold the sheets onto each other."""
    wave = 0.06 * torch.sin(7 * p[:, 0]) * torch.sin(7 * p[:, 2])
    layers = torch.stack([(p[:, 1] - wave - k * 0.06).abs() - 0.01 for k in (-1, 0, 1)])
    return torch.maximum(layers.min(0).values, p[:, [0, 2]].abs().max(1).values - 0.7)


def edge_uses(faces):
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(edges, axis=0, return_counts=True)[1]


def test_decimated_sheets_are_taken_apart_and_never_left_with_a_hole():
    vertices, faces = marching_cubes(stacked_sheets)
    assert (edge_uses(decimate(vertices, faces, 3000)[1]) == 4).any()
    clean = clean_part(vertices, faces, 3000)
    assert len(clean.faces) <= 3000
    assert_closed_and_outward(clean.vertices, clean.faces)
    for budget in (1500, 1000):  # folds of a sheet onto itself may keep an edge of four faces
        uses = edge_uses(clean_part(vertices, faces, budget).faces)
        assert (uses % 2 == 0).all() and (uses == 2).mean() > 0.99


def test_normals_point_outward():
    clean = clean_part(*marching_cubes(BIG), 500)
    tri = clean.vertices[clean.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", normals, tri.mean(1) - np.array([0.1, 0.0, 0.0])) > 0).all()


def tetrahedron(corners):
    """Four vertex indices -> four faces wound outward for `TETRA` positions."""
    a, b, c, d = corners
    return [[a, c, b], [a, b, d], [b, c, d], [a, d, c]]


TETRA = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.2, -1, 0.3], [0.3, 0.2, -1]],
                 np.float32)


def test_sheets_touching_along_an_edge_get_their_own_vertices():
    corners, one = TETRA[:4], np.array(tetrahedron([0, 1, 2, 3]), np.int32)
    kept = one_vertex_per_fan(corners, one)
    assert kept[0] is corners and kept[1] is one  # manifold: as it is
    both = np.array(tetrahedron([0, 1, 2, 3]) + [[0, 4, 1], [0, 1, 5], [1, 4, 5], [0, 5, 4]],
                    np.int32)
    assert not trimesh.Trimesh(TETRA, both, process=False).is_watertight  # edge 0-1: 4 faces
    vertices, faces = one_vertex_per_fan(TETRA, both)
    assert len(vertices) == 8 and trimesh.Trimesh(vertices, faces, process=False).is_watertight
    assert np.array_equal(vertices[faces], TETRA[both])


def test_a_triangle_soup_comes_back_welded_and_closed():
    """Every face with its own three vertices (as an STL file has them) -> one mesh."""
    vertices, faces = marching_cubes(BIG, 32)
    soup = vertices[faces].reshape(-1, 3)
    clean = clean_part(soup, np.arange(len(soup), dtype=np.int32).reshape(-1, 3), None)
    assert len(clean.vertices) == len(vertices) and clean.pieces == 1
    assert_closed_and_outward(clean.vertices, clean.faces)


class AnalyticVAE:
    """Stands in for the VAE in decode_parts: a part's latent holds its field's index."""

    def __init__(self, *fields):
        self.fields = fields

    def field(self, latent):
        return self.fields[int(latent.flatten()[0])]


FIELDS = AnalyticVAE(union(BIG, *SPECKS),
                     union(sphere((-0.5, 0.0, 0.0), 0.35), sphere((0.5, 0.0, 0.0), 0.35)))
LATENTS = torch.arange(2.0).reshape(2, 1, 1)
SETTINGS = dict(resolution=64, coarse_resolution=16, lipschitz=1.0)


def test_decode_parts_cleans_every_part_by_default():
    sphere_part, pair = decode_parts(FIELDS, LATENTS, ExtractSettings(**SETTINGS, max_faces=3000))
    assert (sphere_part.pieces, pair.pieces) == (1, 2)
    assert 0.0 < sphere_part.debris_removed < 0.05 and pair.debris_removed == 0.0
    assert all(len(p.faces) <= 3000 for p in (sphere_part, pair))
    # the local frame centres on what is kept, not on the specks around it
    assert np.allclose(sphere_part.transform[:3, 3], [0.1, 0.0, 0.0], atol=0.01)
    raw = decode_parts(FIELDS, LATENTS, ExtractSettings(**SETTINGS, clean=False))[0]
    assert raw.pieces == 4 and raw.debris_removed == 0.0 and len(raw.faces) > 3000
    full = decode_parts(FIELDS, LATENTS, ExtractSettings(**SETTINGS, max_faces=None))[0]
    assert len(full.faces) > 3000 and full.pieces == 1


def test_parts_touching_the_extraction_box_come_back_closed():
    slab = lambda p: torch.maximum(p[:, 1].abs() - 0.2, p[:, [0, 2]].abs().max(1).values - 2.0)
    part = decode_parts(AnalyticVAE(slab), LATENTS[:1], ExtractSettings(**SETTINGS))[0]
    assert trimesh.Trimesh(part.vertices, part.faces, process=False).is_watertight
    assert part.vertices[:, 0].max() > 1.005 - 2.01 / 64  # closed within a cell of the box


def test_decode_parts_on_a_tiny_vae():
    from engine.models.vecset_vae import VecSetVAE, VecSetVAEConfig
    from engine.training.vae import RECIPES

    torch.manual_seed(0)
    vae = VecSetVAE(VecSetVAEConfig(**RECIPES["tiny"].model)).eval()
    latents = torch.randn(2, 8, vae.config.latent_channels)
    for part in decode_parts(vae, latents, ExtractSettings(resolution=32, coarse_resolution=16)):
        assert part.vertices.dtype == np.float32 and part.faces.dtype == np.int32
        assert part.pieces >= 1 and 0.0 <= part.debris_removed < 1.0


def test_parts_json_reports_faces_vertices_pieces_and_debris(tmp_path):
    parts = decode_parts(FIELDS, LATENTS, ExtractSettings(**SETTINGS))
    generation = Generation([p.as_part("thing_part", i) for i, p in enumerate(parts)],
                            [p.report() for p in parts], [], {})
    write_generation(generation, tmp_path, preview=False)
    written = json.loads((tmp_path / "parts.json").read_text())["parts"]
    for part, row in zip(parts, written):
        assert (row["faces"], row["vertices"]) == (len(part.faces), len(part.vertices))
        assert (row["pieces"], row["debris_removed"]) == (part.pieces, part.debris_removed)


@pytest.mark.parametrize("options", [["--max-faces", "3"], ["--max-faces", "900",
                                                            "--full-resolution"]])
def test_generate_refuses_a_budget_below_a_closed_mesh_and_both_options(tmp_path, options):
    with pytest.raises(SystemExit):
        main(["generate", "image.png", "--parts", "2", "--out", str(tmp_path), *options])
