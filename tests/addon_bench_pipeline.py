"""Engine pipeline for the add-on figures: 8 parts x ~100k vertices, computed once at
start-up so that the job's own time is almost nothing; it reports that time."""

import time

import numpy as np

from addon_geometry import grid_mesh
from bridge.protocol import Part, Result
from engine.server import pipelines

PARTS, SIDE = 8, 317  # 317² = 100,489 vertices, 199,712 triangles per part


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
