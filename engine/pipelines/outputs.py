"""Files of one generation or edit: part_XX.glb, object.glb, parts.json, retrieved.json,
preview.png, and what editing it later needs: latents.safetensors (each part's VAE latent,
float16) and reference.png (the input image as given); UniPart's also segmentation.png.
`read_asset` reads such a folder back,
so an asset can be edited after the engine restarts: the engine keeps no session state.

GLB files keep the part structure: every part is a node carrying its rigid transform over a
local-frame mesh, and parts sharing a mesh id share one glTF mesh (linked duplicates). GLB
stores float32 vertices and the transforms as they are, so a part read back is bit-identical."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import trimesh
from safetensors.numpy import load_file, save_file

from bridge.protocol import Part
from engine.data.asset import PartAsset
from engine.files import write_atomic, write_json_atomic

PREVIEW_SIZE = 512
PREVIEW_MATERIAL = (0.7, 0.7, 0.7)
LATENTS, REFERENCE, PARTS = "latents.safetensors", "reference.png", "parts.json"
SEGMENTATION = "segmentation.png"  # UniPart: Ẑ's latent segmentation (render/segmentation.py)


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


def latent_key(index: int) -> str:
    return f"part_{index:02d}"


def write_generation(generation, out: Path, preview: bool = True, renderer=None) -> list[Path]:
    """Write every file of a Generation into `out`; returns the paths. `renderer`: an open
    Renderer for the preview (one per call otherwise)."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in generation.parts:
        paths.append(write_atomic(out / f"part_{part.index:02d}.glb", scene_of([part]).export))
    paths.append(write_atomic(out / "object.glb", scene_of(generation.parts).export))
    latents = {latent_key(p.index): np.asarray(p.latent, np.float16)
               for p in generation.parts if p.latent is not None}
    if latents:
        paths.append(write_atomic(out / LATENTS, lambda path: save_file(latents, str(path))))
    if generation.reference is not None:
        paths.append(write_atomic(out / REFERENCE,
                                  Image.fromarray(np.asarray(generation.reference)).save))
    paths.append(write_json_atomic(out / PARTS, {
        "parts": [{"index": p.index, "label": p.label, "mesh_id": p.mesh_id,
                   "transform": p.transform.tolist(), "vertices": len(p.vertices),
                   "faces": len(p.faces), **report, "file": f"part_{p.index:02d}.glb"}
                  for p, report in zip(generation.parts, generation.reports)],
        "timings": generation.timings, "params": generation.params}))
    paths.append(write_json_atomic(out / "retrieved.json", generation.retrieved))
    if preview:
        paths.append(render_preview(generation.parts, out / "preview.png", renderer))
    if preview and generation.segmentation is not None:
        from engine.render.segmentation import draw_segmentation

        picture = draw_segmentation(generation.segmentation[:, :3],
                                    generation.segmentation[:, 3].astype(int))
        paths.append(write_atomic(out / SEGMENTATION, Image.fromarray(picture).save))
    return paths


@dataclass
class SavedAsset:
    """An asset folder read back: its parts (with latents where saved), the reference image
    (None if there was none), the per-part reports and the params it was made with."""
    parts: list[Part]
    reference: np.ndarray | None
    reports: list[dict]
    params: dict


def read_part(path: Path, row: dict) -> Part:
    """One part_XX.glb (one node over one mesh) as the Part parts.json describes."""
    scene = trimesh.load(path, process=False, force="scene")
    (node,) = [n for n in scene.graph.nodes_geometry]
    transform, geometry = scene.graph[node]
    mesh = scene.geometry[geometry]
    return Part(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32),
                np.asarray(transform, np.float64), row["label"], row["index"], row["mesh_id"])


def read_asset(folder: Path) -> SavedAsset:
    """Read a folder `write_generation` wrote; a clear error when it is not one."""
    from PIL import Image

    folder = Path(folder)
    if not (folder / PARTS).is_file():
        raise FileNotFoundError(f"{folder} has no {PARTS}: not the output of `python -m engine "
                                f"generate` or `edit`")
    info = json.loads((folder / PARTS).read_text())
    latents = load_file(str(folder / LATENTS)) if (folder / LATENTS).is_file() else {}
    parts, reports = [], []
    for row in info["parts"]:
        part = read_part(folder / row["file"], row)
        key = latent_key(part.index)
        part.latent = latents[key].astype(np.float32) if key in latents else None
        parts.append(part)
        reports.append({k: v for k, v in row.items() if k not in
                        ("index", "label", "mesh_id", "transform", "vertices", "faces", "file")})
    reference = (np.asarray(Image.open(folder / REFERENCE)) if (folder / REFERENCE).is_file()
                 else None)
    return SavedAsset(parts, reference, reports, info.get("params", {}))
