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
from engine.geometry.topology import triangle_edges, with_edges

REPEATS = 3


def test_building_8_parts_of_100k_vertices(addon, empty_scene):
    vertices, faces = grid_mesh(SIDE)
    bare = [Part(vertices, faces, np.eye(4), f"bench_part{n}", n, f"mesh{n}")
            for n in range(PARTS)]
    edge_times = []
    for _ in range(REPEATS):  # the engine's work, off Blender's clock
        started = time.perf_counter()
        triangle_edges(faces)
        edge_times.append(time.perf_counter() - started)
    parts = with_edges(bare)  # what the engine sends
    times, bare_times = [], []
    for _ in range(REPEATS):
        for given, into in ((parts, times), (bare, bare_times)):
            started = time.perf_counter()
            root = addon.scene.build_asset(given, name="bench", asset_id="bench", parameters={})
            into.append(time.perf_counter() - started)
            meshes = [child.data for child in root.children]
            assert sum(len(mesh.vertices) for mesh in meshes) == PARTS * len(vertices)
            assert len({len(mesh.edges) for mesh in meshes}) == 1
    print(f"\n[figure] scene building, {PARTS} parts x {len(vertices):,} vertices "
          f"({len(faces):,} triangles each) with the engine's edges: "
          f"{statistics.median(times) * 1e3:.0f} ms median of {REPEATS} (target <= 150 ms); "
          f"without them (older engines): {statistics.median(bare_times) * 1e3:.0f} ms; "
          f"engine-side edge computation: {statistics.median(edge_times) * 1e3:.1f} ms per mesh")


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
