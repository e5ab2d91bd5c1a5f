"""Small pipelines that exercise the engine's job machinery in the bridge tests.

Loaded into a test engine with `python -m engine serve --pipeline-module
bridge_test_pipeline`; never part of the shipped engine.
"""

import time

import numpy as np

from bridge.protocol import Part, Result
from engine.server import pipelines

VERTICES_PER_PART = 50
THUMBNAIL = b"\x89PNG test thumbnail"
SLOW_STEP = 0.1  # seconds per step of the "test-slow" pipeline


def make_part(seed: int, index: int, vertices: int = VERTICES_PER_PART) -> Part:
    """The part the "test" pipeline returns: a deterministic function of (seed, index)."""
    rng = np.random.default_rng([seed, index])
    faces = np.arange(vertices * 2 * 3, dtype=np.int32).reshape(-1, 3) % vertices
    transform = np.eye(4)
    transform[:3, 3] = (index, seed % 7, -index)
    return Part(rng.random((vertices, 3), dtype=np.float32), faces, transform,
                f"test_part{index}", index, f"mesh{index % 2}")


def generate(request, progress, cancelled):
    steps = request.params["steps"] or 3
    for step in range(steps):
        progress("denoise", step / steps, f"step {step + 1} of {steps}")
    count = request.params["parts"] or 2
    parts = [make_part(request.params["seed"], index) for index in range(count)]
    return Result(parts, {"seed": request.params["seed"], "image_shape": list(request.image.shape),
                          "image_corner": request.image[0, 0].tolist()})


def generate_slow(request, progress, cancelled):
    steps = request.params["steps"] or 1000
    for step in range(steps):
        progress("denoise", step / steps)
        time.sleep(SLOW_STEP)
    return Result([make_part(request.params["seed"], 0)], {"steps": steps})


def generate_fail(request, progress, cancelled):
    progress("denoise", 0.0)
    raise RuntimeError("boom in the test pipeline")


def generate_bad_result(request, progress, cancelled):
    part = make_part(0, 0)
    part.vertices = part.vertices.astype(np.float64)
    return Result([part], {})


def edit_echo(request, progress, cancelled):
    progress("echo", 0.5)
    return Result(request.parts, {"targets": request.params["targets"]})


def library_search(request, progress, cancelled):
    hits = [{"asset_id": f"asset{n}", "score": 1.0 - n / 10} for n in range(request.params["k"])]
    return Result([], {"hits": hits, "level": request.params["level"]})


def library_asset(request, progress, cancelled):
    parts = [make_part(1, 0)] if request.params["parts"] else []
    arrays = {"thumbnail": THUMBNAIL} if request.params["thumbnail"] else {}
    return Result(parts, {"asset_id": request.params["asset_id"]}, arrays)


def register_pipelines() -> None:
    pipelines.register("generate", "test", generate, {"kind": "test"})
    pipelines.register("generate", "test-slow", generate_slow)
    pipelines.register("generate", "test-fail", generate_fail)
    pipelines.register("generate", "test-bad-result", generate_bad_result)
    pipelines.register("edit", "test-echo", edit_echo)
    pipelines.register("library.search", "library", library_search, {"assets": 3})
    pipelines.register("library.asset", "library", library_asset, {"assets": 3})
