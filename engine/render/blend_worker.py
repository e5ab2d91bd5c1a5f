"""bpy side of engine/render/blend.py, run as
`python -m engine.render.blend_worker JOB.npz SUMMARY.json`.

Builds the job's parts with the add-on's `scene.build_asset` (loaded from its file, so the
add-on's package, its preferences and its pyzmq link stay out of this process), renders them
with Workbench in the add-on's material colours and saves the .blend; writes a JSON summary.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import bpy
import numpy as np

from bridge.protocol import Part
from engine.render.workbench_worker import apply_style, set_camera, setup_scene

ADDON_SCENE = Path(__file__).resolve().parents[2] / "blender_addon" / "scene.py"
STYLE = {"light": "STUDIO", "cavity": True, "outline": True, "aa": "8"}


def addon_scene():
    """blender_addon/scene.py as a module of its own (it imports only bpy and numpy)."""
    spec = importlib.util.spec_from_file_location("partsmith_addon_scene", ADDON_SCENE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(job: Path, summary: Path) -> None:
    with np.load(job) as npz:
        data = {key: npz[key] for key in npz.files}
    header = json.loads(str(data["header"]))
    parts = [Part(data[f"vertices{n}"], data[f"faces{n}"], data["transforms"][n], p["label"],
                  p["index"], p["mesh_id"]) for n, p in enumerate(header["parts"])]
    scene, camera = setup_scene()
    addon = addon_scene()
    root = addon.build_asset(
        parts, name="partsmith_asset", asset_id=header["asset_id"],
        parameters=header["parameters"], retrieved=header["retrieved"],
        collection=scene.collection)
    scene.display.shading.color_type = "MATERIAL"  # the add-on's per-part colours
    scene.render.image_settings.compression = 60
    apply_style(scene, STYLE)
    set_camera(scene, camera, data["cam_K"], data["cam_E"], *data["cam_size"], data["cam_clip"])
    scene.render.filepath = header["render"]
    bpy.ops.render.render(write_still=True)
    bpy.ops.wm.save_as_mainfile(filepath=header["blend"], check_existing=False)
    summary.write_text(json.dumps({
        "root": root.name, "parts": [child.name for child in addon.asset_parts(root)],
        "objects": len(bpy.data.objects), "meshes": len(bpy.data.meshes),
        "materials": len(bpy.data.materials), "blender": bpy.app.version_string}))


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]))
