"""Scene building: engine parts -> an Empty root with one child object per part.

Plain functions over bpy, shared by the operators and the console API. Meshes are filled
with `foreach_set` straight from the numpy arrays (no Python lists, no `from_pydata`), and
nothing touches the scene until every datablock exists, so a failure leaves it unchanged.

An asset remembers what editing it needs, inside the .blend: each part object its latent
(float16, base64) and the transform it was generated at (a part moved since is sent without
its latent, and the engine encodes it where it now is); the root the reference image's bytes
and an edit history. The engine keeps no session state.
"""

from __future__ import annotations

import base64
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
                retrieved: list | None = None, collection=None,
                reference: bytes | None = None, uvs: bool = True,
                root_matrix: Matrix | None = None) -> bpy.types.Object:
    """Create the asset for `parts` (bridge Parts) in a collection of its own, inside
    `collection` (the scene's active collection by default); returns the root Empty. All or
    nothing. `reference`: the reference image's file bytes, kept for later edits; `uvs`: a
    UV map on every part; `root_matrix`: where the object frame sits (default: the origin,
    Y-up turned Z-up)."""
    created: list = []
    try:
        own = _new(created, bpy.data.collections, name)
        root = _new(created, bpy.data.objects, name, None)
        root.empty_display_type = "ARROWS"
        root.matrix_basis = Y_UP_TO_Z_UP if root_matrix is None else root_matrix
        root[PROP + "asset_id"] = asset_id
        root[PROP + "parameters"] = json.dumps(parameters, sort_keys=True)
        root[PROP + "retrieved"] = [_asset_id(asset) for asset in retrieved or []]
        root[PROP + "history"] = "[]"
        if reference is not None:
            root[PROP + "reference"] = base64.b64encode(reference).decode("ascii")
        meshes: dict = {}
        children = []
        for number, part in enumerate(parts):
            key = part.mesh_id if part.mesh_id is not None else ("part", part.index)
            if key not in meshes:
                meshes[key] = _new_mesh(created, part.label, part.vertices, part.faces, uvs)
            children.append(_new_part(created, part, meshes[key], root, asset_id,
                                      _colour(number)))
        for obj in (root, *children):
            own.objects.link(obj)
        target = collection or bpy.context.collection or bpy.context.scene.collection
        target.children.link(own)
    except BaseException:
        remove(created)
        raise
    _select(root)
    return root


def remove(datablocks) -> None:
    """Delete datablocks made by build_asset (objects first, so data has no users)."""
    order = {bpy.types.Object: 0, bpy.types.Mesh: 1, bpy.types.Material: 2,
             bpy.types.Collection: 3}
    for block in sorted(datablocks, key=lambda b: order.get(type(b), 4)):
        collection = {bpy.types.Object: bpy.data.objects, bpy.types.Mesh: bpy.data.meshes,
                      bpy.types.Material: bpy.data.materials,
                      bpy.types.Collection: bpy.data.collections}[type(block)]
        collection.remove(block, do_unlink=True)


def asset_parts(root: bpy.types.Object) -> list:
    """The part objects of an asset, in part-index order."""
    return sorted((child for child in root.children if PROP + "index" in child),
                  key=lambda child: child[PROP + "index"])


def asset_root(obj):
    """The Partsmith asset root of a part object (or of the root itself), else None."""
    while obj is not None:
        if PROP + "asset_id" in obj and PROP + "index" not in obj:
            return obj
        obj = obj.parent
    return None


def mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    """A Blender mesh's float32 (V, 3) vertices and int32 (F, 3) triangles (any polygons
    triangulated as Blender draws them)."""
    vertices = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", vertices)
    mesh.calc_loop_triangles()
    faces = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", faces)
    return vertices.reshape(-1, 3), faces.reshape(-1, 3)


def parts_from_objects(objects) -> tuple[list, Matrix]:
    """Mesh objects made anywhere (by hand, imported) as bridge Parts in the engine's object
    frame (+Y up, centred, longest side 2), each in a local frame at its bounding-box centre,
    and the root matrix that puts that frame back where the objects are."""
    from .bridge import Part

    world, faces = [], []
    for obj in objects:
        vertices, corners = mesh_arrays(obj.data)
        matrix = np.array(Y_UP_TO_Z_UP.inverted() @ obj.matrix_world)
        world.append(vertices.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3])
        faces.append(corners)
    every = np.concatenate(world)
    low, high = every.min(0), every.max(0)
    centre, half = (low + high) / 2, max(float((high - low).max()) / 2, 1e-9)
    parts = []
    for index, (obj, points, tri) in enumerate(zip(objects, world, faces)):
        canonical = (points - centre) / half
        middle = (canonical.min(0) + canonical.max(0)) / 2
        transform = np.eye(4)
        transform[:3, 3] = middle
        parts.append(Part((canonical - middle).astype(np.float32), tri, transform, obj.name,
                          index, None))
    root = Y_UP_TO_Z_UP @ Matrix.Translation(centre.tolist()) @ Matrix.Scale(half, 4)
    return parts, root


def reference_bytes(root) -> bytes | None:
    text = root.get(PROP + "reference")
    return None if text is None else base64.b64decode(text)


def part_of(obj):
    """A part object as a bridge Part (triangulated local mesh, transform relative to its
    root, label, index), with its stored latent only while it sits where it was generated."""
    from .bridge import Part

    vertices, faces = mesh_arrays(obj.data)
    transform = np.array(obj.matrix_basis, dtype=np.float64)
    latent = None
    stored = obj.get(PROP + "latent")
    if stored is not None and np.allclose(np.array(obj[PROP + "latent_matrix"]).reshape(4, 4),
                                          transform, atol=1e-6):
        shape = tuple(obj[PROP + "latent_shape"])
        latent = np.frombuffer(base64.b64decode(stored), np.float16).reshape(shape).astype(np.float32)
    return Part(vertices, faces, transform,
                obj.get(PROP + "label", obj.name), int(obj.get(PROP + "index", 0)),
                obj.get(PROP + "mesh_id"), latent=latent)


def replace_parts(root, parts, targets, record: dict, uvs: bool = True) -> list:
    """Put the edited `parts` (bridge Parts whose index is in `targets`) in place of the
    asset's part objects of those indices, each with a new mesh; every other part keeps
    its very datablocks. `record` is appended to the root's edit history. All or nothing:
    the new meshes are made before anything is reassigned. Returns the changed objects."""
    objects = {obj[PROP + "index"]: obj for obj in asset_parts(root)}
    edited = [p for p in parts if p.index in targets]
    created: list = []
    try:
        meshes: dict = {}
        for part in edited:
            key = part.mesh_id if part.mesh_id is not None else ("part", part.index)
            if key not in meshes:
                meshes[key] = _new_mesh(created, part.label, part.vertices, part.faces, uvs)
    except BaseException:
        remove(created)
        raise
    changed = []
    for part in edited:
        obj = objects[part.index]
        old, material = obj.data, obj.material_slots[0].material if obj.material_slots else None
        obj.data = meshes[part.mesh_id if part.mesh_id is not None else ("part", part.index)]
        if not obj.data.materials:
            obj.data.materials.append(None)
        obj.material_slots[0].link = "OBJECT"  # the part keeps its own colour
        obj.material_slots[0].material = material
        obj.matrix_basis = Matrix(np.asarray(part.transform, dtype=np.float64).tolist())
        _store_part(obj, part)
        if old.users == 0:
            bpy.data.meshes.remove(old)
        changed.append(obj)
    history = json.loads(root.get(PROP + "history", "[]"))
    root[PROP + "history"] = json.dumps(history + [record], sort_keys=True)
    return changed


def _store_part(obj, part) -> None:
    """The part's identity and, when it has one, its latent at its current transform."""
    obj[PROP + "label"] = part.label
    obj[PROP + "index"] = int(part.index)
    if part.mesh_id is not None:
        obj[PROP + "mesh_id"] = part.mesh_id
    if part.latent is not None:
        latent = np.ascontiguousarray(part.latent, np.float16)
        obj[PROP + "latent"] = base64.b64encode(latent.tobytes()).decode("ascii")
        obj[PROP + "latent_shape"] = list(latent.shape)
        obj[PROP + "latent_matrix"] = np.asarray(part.transform, np.float64).ravel().tolist()


def _new(created: list, collection, *args):
    block = collection.new(*args)
    created.append(block)
    return block


def box_uvs(vertices: np.ndarray, faces: np.ndarray,
            normals: np.ndarray | None = None) -> np.ndarray:
    """(F·3, 2) float32 UVs per face corner by box projection: each triangle is projected
    along the axis its normal (`normals`, computed when not given) is closest to, and the six
    (axis, side) groups are laid out in a 3 × 2 grid of cells, so that opposite sides do not
    overlap; one scale for the whole part keeps texel density even. Each vertex's six
    candidate UVs are made once; the corners then take theirs in one gather."""
    v = np.asarray(vertices, np.float32)
    if normals is None:
        a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
        normals = np.cross(b - a, c - a)
    axis = np.abs(normals).argmax(1)
    side = np.take_along_axis(normals, axis[:, None], 1)[:, 0] < 0
    low = v.min(0)
    local = (v - low) * np.float32(1.0 / (3.0 * max(float((v.max(0) - low).max()), 1e-9)))
    candidates = np.empty((6, len(v), 2), np.float32)
    for number, (i, j) in enumerate(((1, 2), (0, 2), (0, 1))):  # the axes a projection keeps
        for flipped in (0, 1):
            cell = candidates[2 * number + flipped]
            cell[:, 0] = local[:, i] + np.float32(number / 3)
            cell[:, 1] = local[:, j] + np.float32(flipped / 3)
    group = (2 * axis + side).astype(np.int64)[:, None] * len(v) + faces
    return candidates.reshape(-1, 2)[group].reshape(-1, 2)


def _new_mesh(created: list, name: str, vertices: np.ndarray, faces: np.ndarray,
              uvs: bool = True):
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
    if uvs:  # on Blender's own face normals; the corner attribute takes them in one copy
        normals = np.empty(len(faces) * 3, np.float32)
        mesh.polygon_normals.foreach_get("vector", normals)
        layer = mesh.uv_layers.new(name="UVMap")
        mesh.attributes[layer.name].data.foreach_set(
            "vector", box_uvs(vertices, faces, normals.reshape(-1, 3)).reshape(-1))
    return mesh


def _new_part(created: list, part, mesh, root, asset_id: str, colour):
    obj = _new(created, bpy.data.objects, part.label, mesh)
    obj.parent = root
    obj.matrix_basis = Matrix(np.asarray(part.transform, dtype=np.float64).tolist())
    obj[PROP + "asset_id"] = asset_id
    _store_part(obj, part)
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
