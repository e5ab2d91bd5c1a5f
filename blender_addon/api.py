"""Console and batch API; the operators call the same functions.

    from bl_ext.user_default.partsmith import api
    root = api.generate("chair.png", parts=6, seed=0)   # blocks, prints progress

`start()` is the non-blocking form: it returns a Generation whose `step()` never blocks
(the UI calls it from a timer). Works in the UI and in background mode (`bpy` module).
"""

from __future__ import annotations

import time
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


class Generation:
    """One generate request, from submission to the built asset (or an error).

    `state`: running | done | failed | cancelled. The scene is touched only once, when
    the result arrives, and atomically (see scene.build_asset)."""

    def __init__(self, image, parameters: dict, name: str, collection=None):
        self.parameters = parameters
        self.name = name
        self.collection = collection
        self.state, self.stage, self.fraction = "running", "sending", 0.0
        self.code, self.error = "", ""
        self.root: bpy.types.Object | None = None
        self.started = time.perf_counter()
        engine_link.ensure_engine()
        options = {key: parameters[key] for key in ("parts", "steps", "guidance", "seed", "top_k")}
        self.job = engine_link.client().submit_generate(
            _image_payload(image), pipeline=parameters["model"], **options)

    def step(self) -> bool:
        """Take in the latest news from the engine; True once finished."""
        if self.state != "running":
            return True
        status = self.job.poll()
        self.stage, self.fraction = status.stage or status.state, status.fraction
        if not self.job.done:
            return False
        try:
            result = self.job.result(0)
            # Record what the engine actually used (its defaults for what was left open,
            # e.g. steps, top-k, strength), as the demo's .blend does.
            used = {**self.parameters, **result.metadata.get("params", {})}
            self.root = scene.build_asset(
                result.parts, name=self.name, asset_id=self.job.id, parameters=used,
                retrieved=result.metadata.get("retrieved", []), collection=self.collection)
        except JobCancelled as error:
            self._fail("cancelled", error.code, engine_link.describe(error))
        except EngineError as error:
            self._fail("failed", error.code, engine_link.describe(error))
        except Exception as error:  # scene building failed: the scene is unchanged
            self._fail("failed", "scene_failed", f"Building the asset failed: {error}")
        else:
            self.state, self.fraction = "done", 1.0
            _undo_push(f"Partsmith: {self.name}")
        return True

    def cancel(self) -> None:
        """Ask the engine to stop; `step()` then reports the job as cancelled."""
        self.job.cancel()

    def _fail(self, state: str, code: str, message: str) -> None:
        self.state, self.code, self.error = state, code, message
        Current.error = message


class Current:
    """What the panel shows: the latest generation and the last error."""

    generation: Generation | None = None
    error: str = ""


def start(image, *, parts: int | None = None, seed: int = 0, steps: int | None = None,
          guidance: float | None = None, model: str = "partrag", top_k: int | None = None,
          name: str | None = None, collection=None) -> Generation:
    """Submit a generate request and return at once. `image`: a file path, encoded
    PNG/JPEG/WebP bytes, a uint8 (H, W, 3|4) array, or a bpy Image."""
    parameters = {"model": model, "parts": parts, "seed": seed, "steps": steps,
                  "guidance": guidance, "top_k": top_k, "image": _image_name(image)}
    Current.error = ""
    try:
        generation = Generation(image, parameters, name or _asset_name(image), collection)
    except PartsmithError as error:
        Current.error = error.message
        raise
    except (OSError, ValueError, TypeError) as error:
        Current.error = str(error)
        raise PartsmithError("bad_request", str(error)) from error
    Current.generation = generation
    return generation


def generate(image, *, report=print, **options) -> bpy.types.Object:
    """Generate and wait, printing progress; returns the asset's root Empty. Raises
    PartsmithError; the scene is unchanged then. Ctrl+C cancels the job."""
    generation = start(image, **options)
    shown = None
    try:
        while not generation.step():
            line = f"Partsmith: {generation.stage} {generation.fraction:4.0%}"
            if line != shown and report:
                report(line)
                shown = line
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        generation.cancel()
        raise
    if generation.state != "done":
        raise PartsmithError(generation.code, generation.error)
    if report:
        report(f"Partsmith: {generation.root.name} with {len(generation.root.children)} "
               f"parts in {time.perf_counter() - generation.started:.1f} s")
    return generation.root


def cancel() -> None:
    """Cancel the generation the panel shows, if one is running."""
    if Current.generation is not None and Current.generation.state == "running":
        Current.generation.cancel()


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
