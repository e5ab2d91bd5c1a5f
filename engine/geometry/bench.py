"""`python -m engine bench`: time farthest point sampling at the VAE's working size."""

from __future__ import annotations

import time

import torch

from engine.geometry.fps import farthest_point_sample


def bench_fps(points: int = 8192, samples: int = 2048, batch: int = 1, repeats: int = 3,
              device: str = "cpu") -> float:
    """Print and return the best-of-`repeats` seconds to choose `samples` of `points`."""
    cloud = torch.rand(batch, points, 3, generator=torch.Generator().manual_seed(0))
    cloud = cloud.to(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        farthest_point_sample(cloud, samples)
        if cloud.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    best = min(times)
    print(f"farthest point sampling, {batch} x {points:,} -> {samples:,} points on {device}: "
          f"{best:.3f} s (best of {repeats})")
    return best
