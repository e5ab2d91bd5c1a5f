"""Blender Workbench render worker, run as `python -m engine.render.workbench_worker --reply-fd N`.

The only module of the engine that imports bpy; `renderer.Renderer` runs it in a subprocess so
the engine process stays free of Blender. Protocol: one JSON line per job on stdin
(`{"job": "/path/job.npz"}`), one JSON line per reply on the file descriptor `--reply-fd`
(Blender writes its own chatter to stdout/stderr). The job file (written by `renderer.py`)
holds the meshes, per-part transforms, cameras and, per pass, a style and per-part colours;
the worker writes one PNG per pass and camera into the job's `out_dir`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback

import bpy
import numpy as np
from mathutils import Matrix

# Object canonical frame (+Y up) -> Blender world (+Z up): +90 degrees about X (glTF).
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
# OpenCV camera axes (x right, y down, z forward) -> Blender camera axes (y up, looking down -z).
CV_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])
SENSOR_WIDTH_MM = 36.0
SMOOTH_ANGLE = math.radians(40.0)  # coarse procedural cylinders stay smooth, boxes keep edges


def setup_scene() -> tuple[bpy.types.Scene, bpy.types.Object]:
    """Empty scene, Workbench engine, exact colour management, one reusable camera."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.film_transparent = True
    scene.render.dither_intensity = 0.0
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    image = scene.render.image_settings
    image.file_format, image.color_mode, image.color_depth = "PNG", "RGBA", "8"
    image.compression = 0  # the PNG only crosses a temp folder: favour speed
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    shading = scene.display.shading
    shading.color_type = "OBJECT"
    shading.show_backface_culling = False
    shading.show_xray = False
    shading.use_dof = False
    shading.show_shadows = False  # self-shadowing adds little shape and ~50% render time
    shading.studio_light = "Default"
    shading.cavity_type = "BOTH"
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.data.sensor_fit = "HORIZONTAL"
    camera.data.sensor_width = SENSOR_WIDTH_MM
    scene.collection.objects.link(camera)
    scene.camera = camera
    return scene, camera


def apply_style(scene: bpy.types.Scene, style: dict) -> None:
    """Shaded passes: studio light, cavity, anti-aliasing; id passes: flat, exact, aliased."""
    shading = scene.display.shading
    shading.light = style["light"]
    shading.show_specular_highlight = style["light"] == "STUDIO"
    shading.show_cavity = style["cavity"]
    shading.show_object_outline = style["outline"]
    scene.display.render_aa = style["aa"]


def set_camera(scene: bpy.types.Scene, camera: bpy.types.Object, K: np.ndarray, E: np.ndarray,
               width: int, height: int, clip: np.ndarray) -> None:
    """Blender camera reproducing the pinhole K, E of `camera.Camera` (principal point = shift)."""
    scene.render.resolution_x, scene.render.resolution_y = int(width), int(height)
    data = camera.data
    data.lens = K[0, 0] * SENSOR_WIDTH_MM / width
    data.shift_x = (width / 2 - K[0, 2]) / width
    data.shift_y = (K[1, 2] - height / 2) / width
    data.clip_start, data.clip_end = float(clip[0]), float(clip[1])
    camera.matrix_world = Matrix((Y_UP_TO_Z_UP @ np.linalg.inv(E) @ CV_TO_BLENDER_CAMERA).tolist())


def build_mesh(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, dtype=np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.set_sharp_from_angle(angle=SMOOTH_ANGLE)  # round parts smooth, creases sharp
    return mesh


class Job:
    """The datablocks of one job; `clear` removes every one of them again."""

    def __init__(self) -> None:
        self.root: bpy.types.Object | None = None
        self.meshes: list[bpy.types.Mesh] = []
        self.parts: list[bpy.types.Object] = []

    def build(self, scene: bpy.types.Scene, data: dict) -> None:
        """Parts under one root Empty that turns the Y-up object frame into Blender's Z-up."""
        self.root = bpy.data.objects.new("asset", None)
        self.root.matrix_world = Matrix(Y_UP_TO_Z_UP.tolist())
        scene.collection.objects.link(self.root)
        for i in range(int(data["n_meshes"])):  # parts with one mesh_id share one datablock
            self.meshes.append(build_mesh(f"mesh{i}", data[f"vertices{i}"], data[f"faces{i}"]))
        for k, (mesh_index, transform) in enumerate(zip(data["part_mesh"], data["part_transform"])):
            obj = bpy.data.objects.new(f"part{k}", self.meshes[int(mesh_index)])
            self.parts.append(obj)
            scene.collection.objects.link(obj)
            obj.parent = self.root
            obj.matrix_parent_inverse = Matrix.Identity(4)
            obj.matrix_basis = Matrix(transform.tolist())

    def colour(self, colours: np.ndarray) -> None:
        for obj, rgb in zip(self.parts, colours):
            obj.color = (float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0)

    def clear(self) -> None:
        for obj in self.parts + ([self.root] if self.root else []):
            bpy.data.objects.remove(obj, do_unlink=True)
        for mesh in self.meshes:
            bpy.data.meshes.remove(mesh, do_unlink=True)


def run_job(scene: bpy.types.Scene, camera: bpy.types.Object, path: str) -> dict:
    with np.load(path) as npz:
        data = {key: npz[key] for key in npz.files}
    header = json.loads(str(data["header"]))
    job = Job()
    try:
        job.build(scene, data)
        files: dict[str, list[str]] = {}
        for style in header["passes"]:
            apply_style(scene, style)
            job.colour(data[f"colours_{style['name']}"])
            files[style["name"]] = []
            for c in range(len(data["cam_K"])):
                set_camera(scene, camera, data["cam_K"][c], data["cam_E"][c],
                           *data["cam_size"][c], data["cam_clip"][c])
                scene.render.filepath = os.path.join(header["out_dir"], f"{style['name']}_{c}.png")
                bpy.ops.render.render(write_still=True)
                files[style["name"]].append(scene.render.filepath)
    finally:
        job.clear()
    return {"files": files, "datablocks": {"objects": len(bpy.data.objects),
                                           "meshes": len(bpy.data.meshes)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reply-fd", type=int, required=True)
    args = parser.parse_args()
    reply = os.fdopen(args.reply_fd, "w", buffering=1)

    def send(message: dict) -> None:
        reply.write(json.dumps(message) + "\n")

    scene, camera = setup_scene()
    send({"ready": True, "blender": bpy.app.version_string})
    for line in iter(sys.stdin.readline, ""):
        request = json.loads(line)
        try:
            send({"ok": True, **run_job(scene, camera, request["job"])})
        except Exception:  # report and keep serving; the engine decides what to do
            send({"ok": False, "error": traceback.format_exc()})


if __name__ == "__main__":
    main()
