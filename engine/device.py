"""Where the engine computes and how long each stage takes: the lowest layer, used by every
package above it."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto": CUDA when present, else the CPU; anything else as torch names it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def describe_device(device: torch.device) -> str:
    """What a run computed on, for model cards and benchmarks."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}"
    return f"CPU, {torch.get_num_threads()} threads"


class Stopwatch:
    """Wall time per named stage, waiting for queued CUDA work so times are real."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
