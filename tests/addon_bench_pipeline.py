"""Engine pipelines for the add-on figures, computed once at start-up so that a job's own
time is almost nothing (each reports it): `bench-parts` generates 8 parts x ~100k vertices;
`bench-small` generates 8 parts x ~10k vertices (a generated asset's size) and its edit
puts a ~100k-vertex part in place of the first target."""

import time

import numpy as np

from addon_geometry import grid_mesh
from bridge.protocol import Part, Result
from engine.server import pipelines

PARTS, SIDE = 8, 317  # 317² = 100,489 vertices, 199,712 triangles per part
SMALL_SIDE = 100  # 10,000 vertices: about what a generated part has


def register_pipelines() -> None:
    vertices, faces = grid_mesh(SIDE)
    parts = []
    for index in range(PARTS):
        transform = np.eye(4)
        transform[:3, 3] = (index * 0.3, 0.0, 0.0)
        parts.append(Part(vertices + np.float32(index), faces, transform, f"bench_part{index}",
                          index, f"mesh{index}"))

    def run(request, progress, cancelled):
        started = time.perf_counter()
        progress("bench", 0.5)
        return Result(parts, {"engine_seconds": time.perf_counter() - started})

    pipelines.register("generate", "bench-parts", run)

    small_vertices, small_faces = grid_mesh(SMALL_SIDE)
    small = [Part(small_vertices + np.float32(index), small_faces, parts[index].transform,
                  f"bench_part{index}", index, f"mesh{index}") for index in range(PARTS)]

    def generate_small(request, progress, cancelled):
        started = time.perf_counter()
        return Result(small, {"engine_seconds": time.perf_counter() - started})

    def swap_in_big(request, progress, cancelled):
        started = time.perf_counter()
        target = request.params["targets"][0]
        out = [Part(vertices, faces, p.transform, "bench_swapped", p.index, "swapped")
               if p.index == target else p for p in request.parts]
        return Result(out, {"engine_seconds": time.perf_counter() - started})

    pipelines.register("generate", "bench-small", generate_small)
    pipelines.register("edit", "bench-small", swap_in_big)
