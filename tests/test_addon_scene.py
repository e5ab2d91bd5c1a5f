"""Scene building of the add-on (no engine): frames, linked duplicates, properties,
materials, atomicity."""

import json

import bpy
import bmesh  # after bpy, which provides it
import numpy as np
import pytest
from mathutils import Matrix

from addon_harness import addon, empty_scene, grid_mesh, scene_snapshot  # noqa: F401
from bridge.protocol import Part
from bridge_test_pipeline import make_part
from engine.geometry.topology import with_edges


def parts_with_duplicates() -> list:
    parts = [make_part(3, index) for index in range(4)]
    for part in parts:
        part.mesh_id = f"m{part.index}"
    parts[3] = Part(parts[1].vertices, parts[1].faces, parts[3].transform, "chair_leg", 3, "leg")
    parts[1].label, parts[1].mesh_id = "chair_leg", "leg"
    return parts


def build(addon, parts, **extra):
    return addon.scene.build_asset(parts, name="chair_asset", asset_id="a1",
                                   parameters={"seed": 3, "model": "test"}, **extra)


def test_world_matrices_are_root_times_part_transform(addon, empty_scene):
    parts = parts_with_duplicates()
    root = build(addon, parts)
    bpy.context.view_layer.update()
    assert np.allclose(root.matrix_world, addon.scene.Y_UP_TO_Z_UP)
    children = addon.scene.asset_parts(root)
    assert [child["partsmith_index"] for child in children] == [0, 1, 2, 3]
    for part, child in zip(parts, children):
        assert child.parent == root
        expected = root.matrix_world @ Matrix(part.transform.tolist())
        assert np.allclose(child.matrix_world, expected, atol=1e-6)


def test_meshes_match_the_arrays_and_duplicates_share_data(addon, empty_scene):
    parts = parts_with_duplicates()
    children = addon.scene.asset_parts(build(addon, parts))
    for part, child in zip(parts, children):
        mesh = child.data
        assert (len(mesh.vertices), len(mesh.polygons)) == (len(part.vertices), len(part.faces))
        corners = np.empty(len(mesh.loops), dtype=np.int32)
        mesh.attributes[".corner_vert"].data.foreach_get("value", corners)
        assert np.array_equal(corners.reshape(-1, 3), part.faces)
        positions = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.attributes["position"].data.foreach_get("vector", positions)
        assert np.array_equal(positions.reshape(-1, 3), part.vertices)
    assert children[1].data == children[3].data  # same mesh_id: one datablock
    assert len({child.data.name for child in children}) == 3
    assert len(bpy.data.meshes) == 3


def test_meshes_are_valid_blender_meshes(addon, empty_scene):
    vertices, faces = grid_mesh(20)
    root = build(addon, [Part(vertices, faces, np.eye(4), "table_top", 0)])
    mesh = root.children[0].data
    assert len(mesh.edges) == 3 * 19 * 19 + 2 * 19
    assert not mesh.validate(verbose=True)  # Blender finds nothing to fix


def corner_pairs(mesh) -> np.ndarray:
    """Each corner's edge as a (smaller, larger) vertex pair, read back from Blender."""
    edges = np.empty(len(mesh.edges) * 2, dtype=np.int32)
    mesh.attributes[".edge_verts"].data.foreach_get("value", edges)
    corner_edges = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.attributes[".corner_edge"].data.foreach_get("value", corner_edges)
    return np.sort(edges.reshape(-1, 2), axis=1)[corner_edges]


def test_engine_edges_make_the_mesh_blender_would(addon, empty_scene, caplog):
    vertices, faces = grid_mesh(30)
    faces = faces[np.random.default_rng(0).permutation(len(faces))]
    part = Part(vertices, faces, np.eye(4), "table_top", 0)
    own = build(addon, [part]).children[0]
    given = build(addon, with_edges([part])).children[0]
    assert "unusable" not in caplog.text  # Blender took the engine's edges
    assert len(given.data.edges) == len(own.data.edges) == 3 * 29 * 29 + 2 * 29
    assert np.array_equal(corner_pairs(given.data), corner_pairs(own.data))
    assert not given.data.validate(verbose=True)  # Blender finds nothing to fix
    bm = bmesh.new()  # a bmesh round trip, as add-ons and modifiers do
    bm.from_mesh(given.data)
    assert (len(bm.verts), len(bm.edges), len(bm.faces)) == (900, len(own.data.edges), len(faces))
    bm.to_mesh(given.data)
    bm.free()
    bpy.context.view_layer.objects.active = given  # and through edit mode
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.object.mode_set(mode="OBJECT")
    assert np.array_equal(np.sort(corner_pairs(given.data), axis=0),
                          np.sort(corner_pairs(own.data), axis=0))
    assert not given.data.validate()


@pytest.mark.parametrize("case", ["swapped", "out_of_range", "larger_first", "dtype", "shape"])
def test_unusable_engine_edges_leave_the_edges_to_blender(addon, empty_scene, caplog, case):
    vertices, faces = grid_mesh(10)
    part = with_edges([Part(vertices, faces, np.eye(4), "table_top", 0)])[0]
    edges, corner_edges = part.edges.copy(), part.corner_edges.copy()
    if case == "swapped":  # valid indices, wrong corners
        corner_edges[[0, 1]] = corner_edges[[1, 0]]
    elif case == "out_of_range":
        edges[5, 1] = len(vertices)
    elif case == "larger_first":
        edges = edges[:, ::-1]
    elif case == "dtype":
        edges = edges.astype(np.int64)
    else:
        corner_edges = corner_edges[:-1]
    part.edges, part.corner_edges = edges, corner_edges
    mesh = build(addon, [part]).children[0].data
    assert "edges are unusable" in caplog.text
    assert len(mesh.edges) == 3 * 9 * 9 + 2 * 9
    assert not mesh.validate(verbose=True)


def test_names_properties_and_one_material_per_part(addon, empty_scene):
    retrieved = [{"asset_id": "lib7", "score": 0.9}, "lib9"]  # as results list them, or ids
    root = build(addon, parts_with_duplicates(), retrieved=retrieved)
    children = addon.scene.asset_parts(root)
    assert [child.name for child in children] == ["test_part0", "chair_leg", "test_part2",
                                                  "chair_leg.001"]
    assert root.type == "EMPTY" and root.name == "chair_asset"
    assert json.loads(root["partsmith_parameters"]) == {"seed": 3, "model": "test"}
    assert list(root["partsmith_retrieved"]) == ["lib7", "lib9"]
    assert [child["partsmith_label"] for child in children][1] == "chair_leg"
    assert {child["partsmith_asset_id"] for child in children} == {"a1"}
    materials = [child.active_material for child in children]
    assert len(set(materials)) == 4
    assert len({tuple(material.diffuse_color) for material in materials}) == 4
    assert bpy.context.view_layer.objects.active == root


def test_a_failure_leaves_the_scene_unchanged(addon, empty_scene):
    build(addon, [make_part(0, 0)])
    before = scene_snapshot()
    broken = [make_part(1, 0), make_part(1, 1)]
    broken[1].vertices = np.zeros((5, 2), dtype=np.float32)  # wrong shape: fails mid-build
    with pytest.raises(Exception):
        build(addon, broken)
    assert scene_snapshot() == before
