"""Scene building: engine parts -> an Empty root with one child object per part.

Plain functions over bpy, shared by the operators and the console API. Meshes are filled
with `foreach_set` straight from the numpy arrays (no Python lists, no `from_pydata`), and
nothing touches the scene until every datablock exists, so a failure leaves it unchanged.
"""

from __future__ import annotations

import colorsys
import json
import math

import bpy
import numpy as np
from mathutils import Matrix

# The engine's object frame is +Y up (glTF); Blender is +Z up. Only the root converts.
Y_UP_TO_Z_UP = Matrix.Rotation(math.pi / 2, 4, "X")
PROP = "partsmith_"  # prefix of every custom property the add-on writes


def build_asset(parts, *, name: str, asset_id: str, parameters: dict,
                retrieved: list | None = None, collection=None) -> bpy.types.Object:
    """Create the asset for `parts` (bridge Parts) and link it into `collection` (the
    scene's active collection by default); returns the root Empty. All or nothing."""
    created: list = []
    try:
        root = _new(created, bpy.data.objects, name, None)
        root.empty_display_type = "ARROWS"
        root.matrix_basis = Y_UP_TO_Z_UP
        root[PROP + "asset_id"] = asset_id
        root[PROP + "parameters"] = json.dumps(parameters, sort_keys=True)
        root[PROP + "retrieved"] = [_asset_id(asset) for asset in retrieved or []]
        meshes: dict = {}
        children = []
        for number, part in enumerate(parts):
            key = part.mesh_id if part.mesh_id is not None else ("part", part.index)
            if key not in meshes:
                meshes[key] = _new_mesh(created, part.label, part.vertices, part.faces)
            children.append(_new_part(created, part, meshes[key], root, asset_id,
                                      _colour(number)))
        target = collection or bpy.context.collection or bpy.context.scene.collection
        for obj in (root, *children):
            target.objects.link(obj)
    except BaseException:
        remove(created)
        raise
    _select(root)
    return root


def remove(datablocks) -> None:
    """Delete datablocks made by build_asset (objects first, so data has no users)."""
    order = {bpy.types.Object: 0, bpy.types.Mesh: 1, bpy.types.Material: 2}
    for block in sorted(datablocks, key=lambda b: order.get(type(b), 3)):
        collection = {bpy.types.Object: bpy.data.objects, bpy.types.Mesh: bpy.data.meshes,
                      bpy.types.Material: bpy.data.materials}[type(block)]
        collection.remove(block, do_unlink=True)


def asset_parts(root: bpy.types.Object) -> list:
    """The part objects of an asset, in part-index order."""
    return sorted((child for child in root.children if PROP + "index" in child),
                  key=lambda child: child[PROP + "index"])


def _new(created: list, collection, *args):
    block = collection.new(*args)
    created.append(block)
    return block


def _new_mesh(created: list, name: str, vertices: np.ndarray, faces: np.ndarray):
    """Fill a mesh through its attribute arrays (memcpy speed); Blender adds the edges."""
    mesh = _new(created, bpy.data.meshes, name)
    corners = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1)
    mesh.vertices.add(len(vertices))
    mesh.loops.add(len(corners))
    mesh.polygons.add(len(faces))
    mesh.attributes["position"].data.foreach_set(
        "vector", np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1))
    mesh.attributes[".corner_vert"].data.foreach_set("value", corners)
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(corners), 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    return mesh


def _new_part(created: list, part, mesh, root, asset_id: str, colour):
    obj = _new(created, bpy.data.objects, part.label, mesh)
    obj.parent = root
    obj.matrix_basis = Matrix(np.asarray(part.transform, dtype=np.float64).tolist())
    obj[PROP + "label"] = part.label
    obj[PROP + "index"] = int(part.index)
    obj[PROP + "asset_id"] = asset_id
    if part.mesh_id is not None:
        obj[PROP + "mesh_id"] = part.mesh_id
    # The material sits on the object, so linked duplicates still get their own colour.
    material = _new(created, bpy.data.materials, part.label)
    material.diffuse_color = (*colour, 1.0)  # viewport and Workbench
    shader = material.node_tree.nodes.get("Principled BSDF") if material.node_tree else None
    if shader is not None:  # EEVEE and Cycles
        shader.inputs["Base Color"].default_value = (*colour, 1.0)
    if not mesh.materials:
        mesh.materials.append(None)
    obj.material_slots[0].link = "OBJECT"
    obj.material_slots[0].material = material
    return obj


def _asset_id(retrieved) -> str:
    """An engine result lists its exemplars as {"asset_id", "score"}; keep the id."""
    return str(retrieved["asset_id"] if isinstance(retrieved, dict) else retrieved)


def _colour(number: int) -> tuple:
    """Evenly spaced hues, so neighbouring part indices never look alike."""
    return colorsys.hsv_to_rgb((number * 0.618034) % 1.0, 0.55, 0.9)


def _select(root) -> None:
    """Make the new root the only selected, active object (when it is in the view layer)."""
    view_layer = bpy.context.view_layer
    if view_layer is None:
        return
    for obj in view_layer.objects.selected:
        obj.select_set(False)
    try:
        root.select_set(True)
    except RuntimeError:  # the target collection is not in this view layer
        return
    view_layer.objects.active = root
