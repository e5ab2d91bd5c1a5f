"""Files of one generation: part_XX.glb, object.glb, parts.json, retrieved.json, preview.png.

GLB files keep the part structure: every part is a node carrying its rigid transform over a
local-frame mesh, and parts sharing a mesh id share one glTF mesh (linked duplicates)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import trimesh

from bridge.protocol import Part
from engine.data.asset import PartAsset
from engine.files import write_atomic, write_json_atomic

PREVIEW_SIZE = 512
PREVIEW_MATERIAL = (0.7, 0.7, 0.7)


def scene_of(parts) -> trimesh.Scene:
    scene = trimesh.Scene()
    meshes = {}
    for part in parts:
        if part.mesh_id not in meshes:
            meshes[part.mesh_id] = trimesh.Trimesh(part.vertices, part.faces, process=False)
        scene.add_geometry(meshes[part.mesh_id], node_name=f"{part.index:02d}_{part.label}",
                           geom_name=part.mesh_id, transform=part.transform)
    return scene


def as_asset(parts: list[Part]) -> PartAsset:
    """Generated parts as a PartAsset in one grey material (for the renderer and the metrics)."""
    return PartAsset("generated", 0, [replace(p, material=0) for p in parts],
                     np.array([PREVIEW_MATERIAL]))


def render_preview(parts, path: Path, renderer=None) -> Path:
    """Part-coloured render from the contact sheets' viewpoint."""
    from engine.render import Renderer
    from engine.render.camera import sheet_camera
    from PIL import Image

    camera = sheet_camera(PREVIEW_SIZE)
    if renderer is None:
        with Renderer() as own:
            image = own.render(as_asset(parts), [camera], preview=True)[0].preview
    else:
        image = renderer.render(as_asset(parts), [camera], preview=True)[0].preview
    write_atomic(path, Image.fromarray(image).save)
    return path


def write_generation(generation, out: Path, preview: bool = True) -> list[Path]:
    """Write every file of a Generation into `out`; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in generation.parts:
        paths.append(write_atomic(out / f"part_{part.index:02d}.glb", scene_of([part]).export))
    paths.append(write_atomic(out / "object.glb", scene_of(generation.parts).export))
    paths.append(write_json_atomic(out / "parts.json", {
        "parts": [{"index": p.index, "label": p.label, "mesh_id": p.mesh_id,
                   "transform": p.transform.tolist(), "vertices": len(p.vertices),
                   "faces": len(p.faces), "pieces": report["pieces"],
                   "debris_removed": report["debris_removed"], "empty": report["empty"],
                   "file": f"part_{p.index:02d}.glb"}
                  for p, report in zip(generation.parts, generation.reports)],
        "timings": generation.timings, "params": generation.params}))
    paths.append(write_json_atomic(out / "retrieved.json", generation.retrieved))
    if preview:
        paths.append(render_preview(generation.parts, out / "preview.png"))
    return paths
