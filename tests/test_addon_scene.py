"""Scene building of the add-on (no engine): frames, linked duplicates, properties,
materials, atomicity."""

import json

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from addon_harness import addon, empty_scene, grid_mesh, scene_snapshot  # noqa: F401
from bridge.protocol import Part
from bridge_test_pipeline import make_part


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


def test_each_asset_has_its_own_collection_and_uvs(addon, empty_scene):
    root = build(addon, parts_with_duplicates())
    own = root.users_collection[0]
    assert own.name == "chair_asset" and own.name in bpy.context.scene.collection.children
    assert {obj.name for obj in own.objects} == {root.name, *(c.name for c in root.children)}
    for child in root.children:
        layer = child.data.uv_layers.active
        assert layer is not None and len(layer.data) == 3 * len(child.data.polygons)
        uv = np.empty(2 * len(layer.data), np.float32)
        layer.data.foreach_get("uv", uv)
        assert 0.0 <= uv.min() and uv.max() <= 1.0 and np.ptp(uv) > 0.1
    bare = build(addon, parts_with_duplicates(), uvs=False)
    assert all(not child.data.uv_layers for child in bare.children)


def test_box_uvs_keep_opposite_sides_apart(addon):
    vertices = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float32)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5]], np.int32)  # the -x and +x sides
    uv = addon.scene.box_uvs(vertices, faces).reshape(4, 3, 2)
    minus_x, plus_x = uv[:2].reshape(-1, 2), uv[2:].reshape(-1, 2)
    assert minus_x[:, 1].min() >= plus_x[:, 1].max() - 1e-9 or plus_x[:, 1].min() >= minus_x[:, 1].max() - 1e-9
