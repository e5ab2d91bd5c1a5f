"""External multi-part assets -> PartAsset in the canonical frame.

- glTF / GLB: one part per node that carries a mesh (its world transform applied), named by
  the node; parts are taken in node-name order.
- OBJ: one part per group (`g`) or object (`o`) statement, in file order; faces before any
  group form a part named "default". Polygons are fanned into triangles.

Both formats are +Y up, as the canonical frame. Labels are `category_name`, where the name is
the node or group name with a Blender-style numeric suffix (".001", "_2") removed, unless the
caller maps names to labels. The asset is then normalised like the procedural ones
(AssetBuilder: bounding-box centre at the origin, longest side 2, part-local frames, shared
mesh ids for identical parts).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from engine.data.asset import AssetBuilder, PartAsset
from engine.data.primitives import Mesh

GREY = (0.6, 0.6, 0.6)  # one neutral material: imported colours are not carried over
SUFFIX = re.compile(r"([._]\d+)+$")


def read_gltf(path: Path) -> list[tuple[str, Mesh]]:
    import trimesh

    scene = trimesh.load(path, force="scene")
    parts = []
    for node in sorted(scene.graph.nodes_geometry):
        transform, geometry = scene.graph[node]
        mesh = scene.geometry[geometry]
        if not hasattr(mesh, "faces") or len(mesh.faces) == 0:
            continue
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        parts.append((node, Mesh(vertices, np.asarray(mesh.faces, dtype=np.int32))
                      .transformed(np.asarray(transform))))
    return parts


def read_obj(path: Path) -> list[tuple[str, Mesh]]:
    vertices: list[list[float]] = []
    groups: dict[str, list[list[int]]] = {}
    current = "default"
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "v":
            vertices.append([float(x) for x in fields[1:4]])
        elif fields[0] in ("g", "o"):
            current = " ".join(fields[1:]) or "default"
        elif fields[0] == "f":
            corners = []
            for field in fields[1:]:
                index = int(field.split("/")[0])
                corners.append(index - 1 if index > 0 else len(vertices) + index)
            if len(corners) < 3 or min(corners) < 0 or max(corners) >= len(vertices):
                raise ValueError(f"{path}:{number}: bad face {line.strip()!r}")
            groups.setdefault(current, []).extend(
                [corners[0], corners[i], corners[i + 1]] for i in range(1, len(corners) - 1))
    all_vertices = np.array(vertices, dtype=np.float64).reshape(-1, 3)
    parts = []
    for name, faces in groups.items():
        faces = np.array(faces, dtype=np.int64)
        used, local = np.unique(faces, return_inverse=True)
        parts.append((name, Mesh(all_vertices[used], local.reshape(-1, 3).astype(np.int32))))
    return parts


def part_name(name: str) -> str:
    """Node / group name -> label part: lower case, numeric suffix dropped, spaces to _."""
    return re.sub(r"\W+", "_", SUFFIX.sub("", name.strip()).lower()).strip("_") or "part"


def import_asset(path: str | Path, category: str, labels: dict[str, str] | None = None,
                 every_label: bool = True) -> PartAsset:
    """Read a multi-part GLB/glTF/OBJ file. `labels` maps node/group names to labels (full
    `category_part` labels or bare part names); other parts are labelled from their names.
    `every_label`: a name in `labels` the file lacks is an error (a typo), as it is for one
    file; a folder of files shares one mapping, which each file uses in part."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".glb", ".gltf"):
        named = read_gltf(path)
    elif suffix == ".obj":
        named = read_obj(path)
    else:
        raise ValueError(f"{path}: unsupported format {suffix!r} (GLB, glTF or OBJ)")
    if len(named) < 1:
        raise ValueError(f"{path} has no mesh parts")
    labels = dict(labels or {})
    unknown = sorted(set(labels) - {name for name, _ in named})
    if unknown and every_label:
        raise ValueError(f"{path} has no parts named {unknown} (it has "
                         f"{[name for name, _ in named]})")
    builder = AssetBuilder(category, [GREY])
    for name, mesh in named:
        label = labels.get(name, part_name(name))
        prefix = f"{category}_"
        builder.add(label[len(prefix):] if label.startswith(prefix) else label, mesh)
    return builder.finish(seed=0)
