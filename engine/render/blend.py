"""A part asset as a .blend file plus a Workbench render of it, built by the add-on's own
scene code (blender_addon/scene.py: root Empty, one object per part, linked duplicates,
per-part materials), so the file is what Generate makes in Blender.

The engine never imports bpy: `write_blend` writes the parts into a job file and runs
`engine.render.blend_worker` once in a subprocess, which answers with a JSON summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from engine.render.camera import sheet_camera
from engine.render.renderer import RenderWorkerError

_REPO_ROOT = Path(__file__).resolve().parents[2]


def write_blend(parts, blend: Path, render: Path, *, asset_id: str, parameters: dict,
                retrieved: list | None = None, size: int = 512, timeout: float = 300.0,
                python: str = sys.executable) -> dict:
    """Build `parts` (objects with vertices, faces, transform, label, index, mesh_id, as
    bridge parts have) with the add-on, save the scene as `blend` and a `size`² render from
    the contact sheets' viewpoint as `render`; returns the worker's summary (object, mesh and
    material counts, root name)."""
    if not parts:
        raise ValueError("no parts to build")
    camera = sheet_camera(size)
    points = [np.asarray(p.vertices, np.float64) @ np.asarray(p.transform)[:3, :3].T
              + np.asarray(p.transform)[:3, 3] for p in parts]
    radius = max(float(np.linalg.norm(v, axis=1).max()) for v in points)
    depth = camera.extrinsic[2, 3]
    near = max((depth - radius) * 0.99, 1e-3)
    header = {"blend": str(Path(blend).resolve()), "render": str(Path(render).resolve()),
              "asset_id": asset_id, "parameters": parameters,
              "retrieved": list(retrieved or []),
              "parts": [{"label": p.label, "index": int(p.index),
                         "mesh_id": None if p.mesh_id is None else str(p.mesh_id)}
                        for p in parts]}
    arrays = {f"vertices{n}": np.asarray(p.vertices, np.float32) for n, p in enumerate(parts)}
    arrays.update({f"faces{n}": np.asarray(p.faces, np.int32) for n, p in enumerate(parts)})
    Path(blend).parent.mkdir(parents=True, exist_ok=True)
    Path(render).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="partsmith-blend-") as tmp:
        job, summary = Path(tmp) / "job.npz", Path(tmp) / "summary.json"
        np.savez(job, header=np.array(json.dumps(header)),
                 transforms=np.stack([np.asarray(p.transform, np.float64) for p in parts]),
                 cam_K=camera.K, cam_E=camera.extrinsic, cam_size=np.array([size, size]),
                 cam_clip=np.array([near, max((depth + radius) * 1.01, near * 2)]), **arrays)
        try:
            done = subprocess.run([python, "-m", "engine.render.blend_worker", str(job),
                                   str(summary)], cwd=_REPO_ROOT, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RenderWorkerError(f"blend worker gave no result within {timeout:g} s")
        if done.returncode != 0 or not summary.is_file():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise RenderWorkerError(f"blend worker failed (exit code {done.returncode}):\n{tail}")
        return json.loads(summary.read_text())
