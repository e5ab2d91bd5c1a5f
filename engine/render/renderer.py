"""Renders PartAssets with Blender Workbench in a persistent worker subprocess.

The engine never imports bpy, so `Renderer` starts `engine.render.workbench_worker` once (about
a second of Blender start-up) and sends it jobs: each job is an .npz in a private temp folder,
named by one JSON line on the worker's stdin; the worker answers with one JSON line on a
dedicated pipe (its stdout/stderr carry Blender's chatter, of which the last lines are kept for
error messages). Asset material colours are scene-linear RGB (see engine/data/materials.py).
"""

from __future__ import annotations

import collections
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from bridge.protocol import Part
from engine.render.camera import Camera
from engine.render.colours import decode_ids, id_codes, preview_colours, srgb_to_linear

_REPO_ROOT = Path(__file__).resolve().parents[2]
_TAIL_LINES = 40

# Blender's Workbench render anti-aliasing choices; each sample costs ~5 ms at 256^2 on CPU.
ANTIALIASING = ("FXAA", "5", "8", "11", "16", "32")
# Pass styles (see workbench_worker.apply_style). The image pass has no object outlines: they
# would draw part boundaries, and the image must not give the segmentation away.
_SHADED = {"light": "STUDIO", "cavity": True, "outline": False}
_IDS = {"light": "FLAT", "aa": "OFF", "cavity": False, "outline": False}


class Renderable(Protocol):
    """What a render needs of an asset (a PartAsset of engine/data/asset.py, a library
    asset): its parts and a colour per material."""
    parts: list[Part]
    materials: np.ndarray  # (M, 3) float RGB in [0, 1]


class RenderWorkerError(RuntimeError):
    """The Blender worker died, timed out or failed a job."""


@dataclass
class View:
    rgba: np.ndarray  # (H, W, 4) uint8, straight alpha, transparent background
    mask: np.ndarray  # (H, W) uint8 part index, 255 = background
    camera: Camera
    preview: np.ndarray | None = None  # (H, W, 4) uint8, one palette colour per part


def _check_mesh(part: Part) -> None:
    """Reject malformed meshes here: bad indices can crash Blender instead of raising."""
    v, f = part.vertices, part.faces
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"part {part.label}: need vertices (V, 3) and faces (F>0, 3), "
                         f"got {v.shape} and {f.shape}")
    if f.min() < 0 or f.max() >= len(v) or not np.isfinite(v).all():
        raise ValueError(f"part {part.label}: face index out of range or non-finite vertex")


def _shutdown(proc: subprocess.Popen, tmp: str) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


class Renderer:
    """A Blender worker process; use as a context manager. Not thread-safe.

    `antialiasing` is one of ANTIALIASING for the shaded passes ("5" balances speed and clean
    edges; "FXAA" is faster but leaves the cavity shading grainy); `timeout` bounds each job
    (seconds); `python` is an interpreter that can import bpy.
    """

    def __init__(self, antialiasing: str = "5", timeout: float = 120.0,
                 python: str = sys.executable) -> None:
        if antialiasing not in ANTIALIASING:
            raise ValueError(f"antialiasing must be one of {ANTIALIASING}, got {antialiasing!r}")
        self._shaded = {**_SHADED, "aa": antialiasing}
        self.timeout = timeout
        self.datablocks: dict[str, int] = {}  # Blender's object/mesh counts after the last job
        self._jobs = 0
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._buffer = b""
        reply_r, reply_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [python, "-m", "engine.render.workbench_worker", "--reply-fd", str(reply_w)],
                cwd=_REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, pass_fds=(reply_w,), text=True, bufsize=1)
        except OSError:
            os.close(reply_r)
            raise
        finally:
            os.close(reply_w)
        self._tmp = tempfile.mkdtemp(prefix="partsmith-render-")
        self._reply_fd = reply_r
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._tmp)
        self._output_thread = threading.Thread(target=self._collect_output, daemon=True)
        self._output_thread.start()
        ready = self._receive()
        self.blender_version = ready.get("blender", "?")

    @property
    def pid(self) -> int:
        """Process id of the Blender worker."""
        return self._proc.pid

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker and delete the temp folder (idempotent)."""
        self._finalizer()
        if self._reply_fd is not None:
            os.close(self._reply_fd)
            self._reply_fd = None

    def render(self, asset: Renderable, cameras: Sequence[Camera], size: int | None = None,
               preview: bool = False) -> list[View]:
        """One View per camera: shaded RGBA, part mask and, if `preview`, a part-coloured render.

        `size` renders square images of that side (cameras are rescaled); None keeps each
        camera's own resolution.
        """
        if self._reply_fd is None:
            raise RenderWorkerError("renderer is closed")
        if not asset.parts or not cameras:
            raise ValueError("need at least one part and one camera")
        if size is not None:
            cameras = [c.resized(size, size) for c in cameras]
        passes = [("rgba", self._shaded, asset.materials[[p.material for p in asset.parts]]),
                  ("mask", _IDS, srgb_to_linear(id_codes(len(asset.parts)) / 255.0))]
        if preview:
            passes.append(("preview", {**self._shaded, "outline": True},
                           srgb_to_linear(preview_colours(len(asset.parts)) / 255.0)))
        out_dir = os.path.join(self._tmp, f"job{self._jobs}")
        self._jobs += 1
        os.mkdir(out_dir)
        try:
            job = self._write_job(out_dir, asset, cameras, passes)
            reply = self._request(job)
            images = {name: [np.asarray(Image.open(f).convert("RGBA")) for f in files]
                      for name, files in reply["files"].items()}
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        return [View(rgba=images["rgba"][c], mask=decode_ids(images["mask"][c], len(asset.parts)),
                     camera=cam, preview=images["preview"][c] if preview else None)
                for c, cam in enumerate(cameras)]

    def _write_job(self, out_dir: str, asset: Renderable, cameras: Sequence[Camera],
                   passes: list[tuple[str, dict, np.ndarray]]) -> str:
        mesh_index: dict[int, int] = {}
        arrays: dict[str, np.ndarray] = {}
        for part in asset.parts:
            _check_mesh(part)
            if part.mesh_id not in mesh_index:
                i = mesh_index[part.mesh_id] = len(mesh_index)
                arrays[f"vertices{i}"], arrays[f"faces{i}"] = part.vertices, part.faces
        radius = max(float(np.linalg.norm(p.object_vertices(), axis=1).max()) for p in asset.parts)
        origin_depth = np.array([c.extrinsic[2, 3] for c in cameras])
        near = np.maximum((origin_depth - radius) * 0.99, 1e-3)
        arrays.update(
            header=np.array(json.dumps({
                "out_dir": out_dir, "passes": [{"name": n, **style} for n, style, _ in passes]})),
            n_meshes=np.array(len(mesh_index)),
            part_mesh=np.array([mesh_index[p.mesh_id] for p in asset.parts]),
            part_transform=np.stack([p.transform for p in asset.parts]),
            cam_K=np.stack([c.K for c in cameras]),
            cam_E=np.stack([c.extrinsic for c in cameras]),
            cam_size=np.array([(c.width, c.height) for c in cameras]),
            cam_clip=np.stack([near, np.maximum((origin_depth + radius) * 1.01, near * 2)], axis=1),
            **{f"colours_{name}": colours for name, _, colours in passes})
        path = os.path.join(out_dir, "job.npz")
        np.savez(path, **arrays)
        return path

    def _request(self, job: str) -> dict:
        try:
            self._proc.stdin.write(json.dumps({"job": job}) + "\n")
            self._proc.stdin.flush()
        except OSError:
            self._fail("render worker died")
        reply = self._receive()
        if not reply.get("ok"):
            raise RenderWorkerError(f"render job failed in the worker:\n{reply.get('error')}")
        self.datablocks = reply["datablocks"]
        return reply

    def _receive(self) -> dict:
        """Next JSON reply line from the worker, or a RenderWorkerError if it dies or stalls."""
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._reply_fd], [], [], remaining)[0]:
                self._proc.kill()
                self._fail(f"render worker gave no reply within {self.timeout:g} s")
            chunk = os.read(self._reply_fd, 1 << 16)
            if not chunk:
                self._fail("render worker died")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _fail(self, what: str) -> None:
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        self._output_thread.join(timeout=2)  # the worker's last lines
        tail = "\n".join(self._tail)
        self.close()
        raise RenderWorkerError(f"{what} (exit code {code}); last worker output:\n{tail}")

    def _collect_output(self) -> None:
        for line in self._proc.stdout:
            self._tail.append(line.rstrip("\n"))
