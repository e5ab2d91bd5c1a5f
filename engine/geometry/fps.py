"""Farthest point sampling: spread-out subsets of point clouds (VecSet query tokens).

Vectorised over the batch and the points, so the only Python loop is over the samples; runs
on whatever device the points are on.
"""

from __future__ import annotations

import torch


def farthest_point_sample(points: torch.Tensor, num_samples: int,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of `num_samples` points chosen greedily, each the farthest from those before.

    points: (N, D) or (B, N, D). Returns int64 indices (num_samples,) or (B, num_samples).
    The first point is index 0, or drawn from `generator` (one per batch item) when given,
    so the result is deterministic for a seed. Ties go to the lowest index.
    """
    unbatched = points.dim() == 2
    if unbatched:
        points = points.unsqueeze(0)
    batch, count, _ = points.shape
    if not 0 < num_samples <= count:
        raise ValueError(f"cannot choose {num_samples} of {count} points")
    if generator is None:
        current = torch.zeros(batch, dtype=torch.long, device=points.device)
    else:
        current = torch.randint(count, (batch,), generator=generator,
                                device=generator.device).to(points.device)
    chosen = torch.empty(batch, num_samples, dtype=torch.long, device=points.device)
    nearest = torch.full((batch, count), float("inf"), dtype=points.dtype, device=points.device)
    by_axis = points.transpose(1, 2).contiguous()  # (B, D, N): each step is D flat passes
    rows = torch.arange(batch, device=points.device)
    threads = torch.get_num_threads()
    if points.device.type == "cpu":
        # Each step is a few microseconds of work: OpenMP fork/join costs more than it
        # saves, and on busy cores it stalls (x20 measured on 2 shared cores).
        torch.set_num_threads(1)
    try:
        for i in range(num_samples):
            chosen[:, i] = current
            offsets = by_axis - points[rows, current].unsqueeze(2)
            torch.minimum(nearest, offsets.square_().sum(1), out=nearest)
            current = nearest.argmax(dim=1)
    finally:
        torch.set_num_threads(threads)
    return chosen[0] if unbatched else chosen
