"""The add-on's figures (printed; `python build.py bench-addon` shows them): building
8 parts x 100k vertices in the scene, and Generate-to-scene overhead beyond the engine."""

import statistics
import time

import bpy
import numpy as np

from addon_harness import EngineProcess, addon, empty_scene, grid_mesh, png_bytes, prefs  # noqa: F401
from addon_bench_pipeline import PARTS, SIDE
from bridge.protocol import Part
from bridge_harness import watchdog  # noqa: F401

REPEATS = 3


def test_building_8_parts_of_100k_vertices(addon, empty_scene):
    vertices, faces = grid_mesh(SIDE)
    parts = [Part(vertices, faces, np.eye(4), f"bench_part{n}", n, f"mesh{n}")
             for n in range(PARTS)]
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        root = addon.scene.build_asset(parts, name="bench", asset_id="bench", parameters={})
        times.append(time.perf_counter() - started)
        assert sum(len(child.data.vertices) for child in root.children) == PARTS * len(vertices)
    print(f"\n[figure] scene building, {PARTS} parts x {len(vertices):,} vertices "
          f"({len(faces):,} triangles each): {statistics.median(times) * 1e3:.0f} ms "
          f"median of {REPEATS} (target <= 150 ms)")


def test_generate_overhead_beyond_the_engine(addon, prefs, empty_scene, tmp_path):
    engine = EngineProcess(tmp_path, "--pipeline-module", "addon_bench_pipeline")
    image = tmp_path / "bench.png"
    image.write_bytes(png_bytes())
    prefs.address = engine.address
    try:
        overheads = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            generation = addon.api.start(str(image), model="bench-parts")
            while not generation.step():
                time.sleep(0.005)
            total = time.perf_counter() - started
            assert generation.state == "done", generation.error
            engine_seconds = generation.job.result(0).metadata["engine_seconds"]
            overheads.append(total - engine_seconds)
    finally:
        engine.stop()
    print(f"\n[figure] Generate -> {PARTS} x {SIDE * SIDE:,}-vertex parts in the scene, minus "
          f"the engine's own time: {statistics.median(overheads) * 1e3:.0f} ms median of "
          f"{REPEATS} (transfer, decoding, scene building, undo step; target <= 300 ms)")


def test_swap_round_trip_beyond_the_engine(addon, prefs, empty_scene, tmp_path):
    """Swap a part of an 8-part asset for a 100k-vertex part: the whole asset goes to the
    engine and back, the new mesh is built and the undo step pushed."""
    engine = EngineProcess(tmp_path, "--pipeline-module", "addon_bench_pipeline")
    image = tmp_path / "bench.png"
    image.write_bytes(png_bytes())
    prefs.address = engine.address
    try:
        root = addon.api.generate(str(image), model="bench-small", report=None)
        overheads = []
        for n in range(REPEATS):
            part = addon.scene.asset_parts(root)[n]
            started = time.perf_counter()
            edit = addon.api.start_edit([part], "place", source="bench:0")
            while not edit.step():
                time.sleep(0.005)
            total = time.perf_counter() - started
            assert edit.state == "done", edit.error
            assert len(part.data.vertices) == SIDE * SIDE
            overheads.append(total - edit.job.result(0).metadata["engine_seconds"])
    finally:
        engine.stop()
    print(f"\n[figure] swap -> a {SIDE * SIDE:,}-vertex part in an 8-part asset, minus the "
          f"engine's own time: {statistics.median(overheads) * 1e3:.0f} ms median of {REPEATS} "
          f"(the asset sent and returned, mesh built, undo step; target <= 150 ms)")
