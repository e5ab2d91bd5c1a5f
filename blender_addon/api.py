"""Console and batch API; the operators call the same functions.

    from bl_ext.user_default.partsmith import api
    root = api.generate("chair.png", parts=6, seed=0)   # blocks, prints progress
    legs = [o for o in root.children if o["partsmith_label"] == "chair_leg"]
    found = api.candidates(legs[0], k=12)                # library parts to swap in
    api.swap(legs[0], found[0]); api.refine(legs[1:], strength=0.5, seed=2)
    roots = api.generate_many(["a.png", "b.png"], parts=4)   # into the scene, one by one
    api.batch("/data/refs", "/data/assets", blend=True)  # to disk, by the engine, resumable

`start()` / `start_edit()` are the non-blocking forms: they return a Task whose `step()`
never blocks (the UI calls it from a timer). Works in the UI and in background mode (`bpy`
module). Edits need no engine state: the asset carries its latents and reference image.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import engine_link, scene
from .bridge import EngineError, JobCancelled

POLL_INTERVAL = 0.02  # seconds between polls in the blocking `generate`


class PartsmithError(Exception):
    """A generation failed; `code` is the bridge error code, the text is for the user."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Task:
    """One engine job, from submission to its change of the scene (or an error).

    `state`: running | done | failed | cancelled. The scene is touched only once, when
    the result arrives, and atomically (scene.build_asset, scene.replace_parts); a
    finished task is one undo step. Subclasses submit in __init__ and apply in `_apply`."""

    changes_scene = True  # whether a finished task is an undo step

    def __init__(self, name: str):
        self.name = name
        self.state, self.stage, self.fraction = "running", "sending", 0.0
        self.code, self.error = "", ""
        self.root: bpy.types.Object | None = None
        self.started = time.perf_counter()

    def step(self) -> bool:
        """Take in the latest news from the engine; True once finished."""
        if self.state != "running":
            return True
        status = self.job.poll()
        self.stage, self.fraction = status.stage or status.state, status.fraction
        if not self.job.done:
            return False
        try:
            self._apply(self.job.result(0))
        except JobCancelled as error:
            self._fail("cancelled", error.code, engine_link.describe(error))
        except EngineError as error:
            self._fail("failed", error.code, engine_link.describe(error))
        except Exception as error:  # scene building failed: the scene is unchanged
            self._fail("failed", "scene_failed", f"Changing the scene failed: {error}")
        else:
            self.state, self.fraction = "done", 1.0
            if self.changes_scene:
                _undo_push(f"Partsmith: {self.name}")
        return True

    def cancel(self) -> None:
        """Ask the engine to stop; `step()` then reports the job as cancelled."""
        self.job.cancel()

    def _fail(self, state: str, code: str, message: str) -> None:
        self.state, self.code, self.error = state, code, message
        Current.error = message


class Generation(Task):
    """One generate request; `root` is the built asset once done."""

    def __init__(self, image, parameters: dict, name: str, collection=None):
        super().__init__(name)
        self.parameters = parameters
        self.collection = collection
        engine_link.ensure_engine()
        options = {key: parameters[key] for key in ("parts", "steps", "guidance", "seed", "top_k")}
        payload = _image_payload(image)
        self.reference = payload if isinstance(payload, bytes) else None
        self.job = engine_link.client().submit_generate(
            payload, pipeline=parameters["model"], **options)

    def _apply(self, result) -> None:
        # Record what the engine actually used (its defaults for what was left open,
        # e.g. steps, top-k, strength), as the demo's .blend does.
        used = {**self.parameters, **result.metadata.get("params", {})}
        self.root = scene.build_asset(
            result.parts, name=self.name, asset_id=self.job.id, parameters=used,
            retrieved=result.metadata.get("retrieved", []), collection=self.collection,
            reference=self.reference, uvs=engine_link.settings().uv_unwrap)


class Edit(Task):
    """One edit of some parts of an asset; `changed` are the part objects it replaced."""

    def __init__(self, root, targets: list[int], operation: str, options: dict):
        super().__init__(f"{operation} {root.name}")
        self.root, self.targets, self.operation = root, targets, operation
        self.options = options
        self.changed: list = []
        parts = [scene.part_of(obj) for obj in scene.asset_parts(root)]
        model = json.loads(root.get(scene.PROP + "parameters", "{}")).get("model", "partrag")
        engine_link.ensure_engine()
        self.job = engine_link.client().submit_edit(
            parts, targets, operation=operation, image=scene.reference_bytes(root),
            pipeline=model, **options)

    def _apply(self, result) -> None:
        record = {"operation": self.operation, "targets": self.targets,
                  **{k: v for k, v in self.options.items() if v is not None}}
        self.changed = scene.replace_parts(self.root, result.parts, self.targets, record,
                                           uvs=engine_link.settings().uv_unwrap)


class Batch(Task):
    """A batch the engine runs on its own machine, writing asset folders to disk (the same
    job as `python -m engine batch`); `summary` once done. The scene is not touched."""

    changes_scene = False

    def __init__(self, source: str, out: str, options: dict):
        super().__init__(f"batch {Path(source).name}")
        self.summary: dict = {}
        self.manifest = ""
        engine_link.ensure_engine()
        self.job = engine_link.client().submit_batch(source, out, **options)

    def _apply(self, result) -> None:
        self.summary = dict(result.metadata["summary"])
        self.manifest = result.metadata["manifest"]


class Current:
    """What the panel shows: the latest generation or edit, and the last error."""

    task: Task | None = None
    error: str = ""


def start(image, *, parts: int | None = None, seed: int = 0, steps: int | None = None,
          guidance: float | None = None, model: str = "partrag", top_k: int | None = None,
          name: str | None = None, collection=None) -> Generation:
    """Submit a generate request and return at once. `image`: a file path, encoded
    PNG/JPEG/WebP bytes, a uint8 (H, W, 3|4) array, or a bpy Image."""
    parts = parts or None  # 0 means "the model decides", as in the panel
    parameters = {"model": model, "parts": parts, "seed": seed, "steps": steps,
                  "guidance": guidance, "top_k": top_k, "image": _image_name(image)}
    try:
        generation = _submitted(lambda: Generation(image, parameters, name or _asset_name(image),
                                                   collection))
    except (OSError, ValueError, TypeError) as error:
        Current.error = str(error)
        raise PartsmithError("bad_request", str(error)) from error
    Current.task = generation
    return generation


def _submitted(submit):
    """`submit()` (a Task being made), with what refuses it turned into PartsmithError and
    shown in the panel."""
    Current.error = ""
    try:
        return submit()
    except PartsmithError as error:
        Current.error = error.message
        raise
    except EngineError as error:  # refused before sending: the request breaks the protocol
        Current.error = engine_link.describe(error)
        raise PartsmithError(error.code, Current.error) from error


def generate(image, *, report=print, **options) -> bpy.types.Object:
    """Generate and wait, printing progress; returns the asset's root Empty. Raises
    PartsmithError; the scene is unchanged then. Ctrl+C cancels the job."""
    generation = wait(start(image, **options), report)
    if report:
        report(f"Partsmith: {generation.root.name} with {len(generation.root.children)} "
               f"parts in {time.perf_counter() - generation.started:.1f} s")
    return generation.root


def wait(task: Task, report=print) -> Task:
    """Step `task` until it finishes, printing progress; raise PartsmithError unless done.
    Ctrl+C cancels the job."""
    shown = None
    try:
        while not task.step():
            line = f"Partsmith: {task.stage} {task.fraction:4.0%}"
            if line != shown and report:
                report(line)
                shown = line
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        task.cancel()
        raise
    if task.state != "done":
        raise PartsmithError(task.code, task.error)
    return task


IN_FLIGHT = 2  # generate_many: jobs queued at the engine at once (one computes, one waits)


def generate_many(images, *, report=print, **options) -> list:
    """One asset per image, built in the scene as each arrives (the options of `generate`
    apply to all); returns their roots in order, None where an image failed (reported; the
    others go on). Ctrl+C cancels the jobs still at the engine."""
    images = list(images)
    roots, waiting, running = [None] * len(images), deque(range(len(images))), []
    finished = 0

    def failed(n: int, message: str) -> None:
        if report:
            report(f"Partsmith: {_image_name(images[n])} failed: {message}")

    try:
        while waiting or running:
            while waiting and len(running) < IN_FLIGHT:
                n = waiting.popleft()
                try:
                    running.append((n, start(images[n], **options)))
                except PartsmithError as error:
                    failed(n, error.message)
                    finished += 1
            for n, task in list(running):
                if not task.step():
                    continue
                running.remove((n, task))
                finished += 1
                if task.state == "done":
                    roots[n] = task.root
                else:
                    failed(n, task.error)
                if report:
                    report(f"Partsmith: {finished}/{len(images)} images")
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        for _, task in running:
            task.cancel()
        raise
    return roots


def start_batch(source, out, *, parts: int | None = None, seed: int = 0, blend: bool = False,
                retry_failed: bool = False, model: str = "partrag") -> Batch:
    """Submit a batch and return at once: `source` a folder of images or a CSV/JSONL
    manifest, `out` the folder to write; both paths on the engine's machine (Blender's
    `//` relative paths are made absolute)."""
    def submit() -> Batch:
        return Batch(bpy.path.abspath(str(source)), bpy.path.abspath(str(out)),
                     {"parts": parts or None, "seed": seed, "blend": blend,
                      "retry_failed": retry_failed, "pipeline": model})

    Current.task = task = _submitted(submit)
    return task


def batch(source, out, *, report=print, **options) -> dict:
    """Run a batch and wait, printing progress; returns its summary (rows, ok, failed,
    skipped, stopped, seconds, images_per_minute). Rows that fail are recorded in
    out/batch.jsonl and the rest go on; Ctrl+C cancels, and the same call later resumes."""
    task = wait(start_batch(source, out, **options), report)
    if report:
        s = task.summary
        report(f"Partsmith: batch {s['ok']} ok, {s['failed']} failed, {s['skipped']} done "
               f"before, {s['images_per_minute']:.1f} images/min; {task.manifest}")
    return task.summary


@dataclass(frozen=True)
class Candidate:
    """A library part the engine proposes for a swap; `thumbnail` is its asset's picture
    (WebP bytes)."""
    asset_id: str
    part: int
    label: str
    category: str
    thumbnail: bytes = b""

    @property
    def source(self) -> str:
        return f"{self.asset_id}:{self.part}"


def start_edit(objs, operation: str, **options) -> Edit:
    """Submit an edit of the part objects `objs` (one asset's) and return at once; the
    returned Edit's `step()` never blocks. Options: strength, seed, steps, guidance,
    source ("ASSET_ID:PART" or a Candidate), alpha."""
    objs = list(objs) if isinstance(objs, (list, tuple, set)) else [objs]
    roots = {scene.asset_root(obj) for obj in objs}
    targets = sorted(int(obj[scene.PROP + "index"]) for obj in objs if scene.PROP + "index" in obj)

    def submit() -> Edit:
        if not objs or None in roots:
            raise PartsmithError("invalid_part", "Select part objects of a Partsmith asset")
        if len(roots) > 1:
            raise PartsmithError("invalid_part", "Edit the parts of one asset at a time")
        if len(targets) != len(objs):
            raise PartsmithError("invalid_part", "Select the parts to edit, not the asset root")
        if isinstance(options.get("source"), Candidate):
            options["source"] = options["source"].source
        return Edit(roots.pop(), targets, operation, options)

    Current.task = edit = _submitted(submit)
    return edit


def edit(objs, operation: str, *, report=print, **options) -> list:
    """Edit and wait; returns the changed part objects. Raises PartsmithError; the scene is
    unchanged then."""
    return wait(start_edit(objs, operation, **options), report).changed


def refine(objs, *, strength: float | None = 0.5, seed: int = 1, steps: int | None = None,
           report=print) -> list:
    """Re-noise the parts to `strength` and denoise them again; a new seed varies them."""
    return edit(objs, "refine", strength=strength, seed=seed, steps=steps, report=report)


def swap(part_obj, candidate, *, strength: float | None = None, seed: int = 0,
         report=print) -> list:
    """Put the library part `candidate` (a Candidate or "ASSET_ID:PART") in the part's
    place and blend it in."""
    return edit(part_obj, "swap", source=candidate, strength=strength, seed=seed, report=report)


def place(part_obj, candidate, *, report=print) -> list:
    """Put the library part in the part's place as it is: instant and always clean."""
    return edit(part_obj, "place", source=candidate, report=report)


def interpolate(part_obj, alpha: float, *, candidate=None, seed: int = 0,
                report=print) -> list:
    """Move the part toward a library part (default: the nearest of its label) by alpha."""
    return edit(part_obj, "interpolate", alpha=alpha, source=candidate, seed=seed,
                report=report)


def assemble(objs, *, seed: int = 0, steps: int | None = None, report=print) -> list:
    """Resynthesise several parts together beside the rest of the asset."""
    return edit(objs, "assemble", seed=seed, steps=steps, report=report)


def adopt(objects, name: str = "adopted_asset", collection=None) -> bpy.types.Object:
    """Bring your own asset: any set of mesh objects (made by hand, imported from GLB, ...)
    becomes a Partsmith asset that the part editor can work on: copies of their meshes, one
    part each, under a new root placed where they are (the engine's canonical frame, scaled
    back). The originals are hidden, not changed. One undo step."""
    meshes = [obj for obj in objects if obj.type == "MESH" and len(obj.data.polygons)]
    if len(meshes) < 2:
        raise PartsmithError("invalid_part", "Select at least two mesh objects (the parts)")
    parts, matrix = scene.parts_from_objects(meshes)
    root = scene.build_asset(parts, name=name, asset_id=name,
                             parameters={"model": "partrag", "adopted": [o.name for o in meshes]},
                             collection=collection, uvs=engine_link.settings().uv_unwrap,
                             root_matrix=matrix)
    for obj in meshes:
        obj.hide_render = True
        if obj.name in bpy.context.view_layer.objects:
            obj.hide_set(True)
    _undo_push(f"Partsmith: adopt {name}")
    return root


def import_library_asset(asset_id: str, collection=None) -> bpy.types.Object:
    """A library asset as a new Partsmith asset in the scene (its parts editable like a
    generated asset's; they carry no latents, so the engine encodes them). Blocks."""
    engine_link.ensure_engine()
    try:
        result = engine_link.client().library_asset(asset_id, thumbnail=False)
    except EngineError as error:
        raise PartsmithError(error.code, engine_link.describe(error)) from error
    root = scene.build_asset(result.parts, name=asset_id, asset_id=asset_id,
                             parameters={"model": "partrag", "library_asset": asset_id},
                             collection=collection, uvs=engine_link.settings().uv_unwrap)
    _undo_push(f"Partsmith: import {asset_id}")
    return root


def candidates(part_obj, k: int = 12, label: str | None = None) -> list[Candidate]:
    """Library parts to swap in for `part_obj`, closest in shape first (blocks)."""
    root = scene.asset_root(part_obj)
    if root is None or scene.PROP + "index" not in part_obj:
        raise PartsmithError("invalid_part", "Select a part object of a Partsmith asset")
    model = json.loads(root.get(scene.PROP + "parameters", "{}")).get("model", "partrag")
    engine_link.ensure_engine()
    try:
        result = engine_link.client().candidates(scene.part_of(part_obj), k=k, label=label,
                                                 pipeline=model)
    except EngineError as error:
        raise PartsmithError(error.code, engine_link.describe(error)) from error
    return [Candidate(c["asset_id"], c["part"], c["label"], c["category"],
                      result.arrays.get(f"thumbnails/{n}", b""))
            for n, c in enumerate(result.metadata["candidates"])]


def cancel() -> None:
    """Cancel the generation or edit the panel shows, if one is running."""
    if Current.task is not None and Current.task.state == "running":
        Current.task.cancel()


def _image_payload(image):
    """What the bridge sends: file bytes where possible, else uint8 RGBA pixels."""
    if isinstance(image, (str, Path)):
        path = Path(bpy.path.abspath(str(image)))
        if not path.is_file():
            raise PartsmithError("invalid_image", f"Reference image not found: {path}")
        return path.read_bytes()
    if isinstance(image, bpy.types.Image):
        return _blender_image(image)
    return image


def _blender_image(image: bpy.types.Image):
    if image.packed_file is not None:
        return bytes(image.packed_file.data)
    path = Path(bpy.path.abspath(image.filepath)) if image.filepath else None
    if path is not None and path.is_file() and not image.is_dirty:
        return path.read_bytes()
    width, height = image.size
    if width == 0 or height == 0:
        raise PartsmithError("invalid_image", f"Image {image.name!r} has no pixels")
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    # Blender stores rows bottom-up; the engine expects top-down.
    rgba = pixels.reshape(height, width, 4)[::-1]
    return np.ascontiguousarray(np.clip(rgba * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _image_name(image) -> str:
    if isinstance(image, (str, Path)):
        return Path(str(image)).name
    if isinstance(image, bpy.types.Image):
        return image.name
    return "<pixels>"


def _asset_name(image) -> str:
    stem = Path(_image_name(image)).stem.strip("<>")
    return f"{stem}_asset" if stem else "partsmith_asset"


def _undo_push(message: str) -> None:
    """One undo step per asset (the generate operator itself pushes none)."""
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=message)
