"""The PartRAG pipeline behind the engine server's `generate` requests.

Registered at start-up when `<models>/partrag` holds a bundle; the networks load on the
first job (on the worker thread, so the server answers hello and heartbeats meanwhile) and
stay loaded. Without a bundle nothing is registered and the server answers
`model_unavailable`, as before.
"""

from __future__ import annotations

import threading
from pathlib import Path

from bridge.protocol import Result
from engine.server import pipelines

DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "models"
DEFAULT_PARTS = 4  # when a request leaves `parts` to the engine


class PartRAGService:
    """Loads the bundle lazily, once, and runs generate requests through it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._pipeline = None
        self._lock = threading.Lock()

    def pipeline(self):
        with self._lock:
            if self._pipeline is None:
                from engine.pipelines.partrag import PartRAGPipeline, installed_library
                from engine.device import resolve_device

                self._pipeline = PartRAGPipeline(self.folder, resolve_device("auto"),
                                                 library=installed_library(self.folder))
            return self._pipeline

    def __call__(self, request: pipelines.Request, progress, cancelled) -> Result:
        from engine.pipelines.partrag import DEFAULT_STEPS

        progress("load", 0.0)
        pipeline = self.pipeline()
        params = request.params

        def check_cancelled() -> None:
            if cancelled():
                raise pipelines.JobCancelled

        generation = pipeline(
            request.image, params["parts"] or DEFAULT_PARTS,
            steps=params["steps"] or DEFAULT_STEPS,
            guidance=params["guidance"], seed=params["seed"],
            top_k=params["top_k"],  # None (guidance, top-k): the pipeline's default
            progress=progress, check_cancelled=check_cancelled)
        return Result(generation.parts, {"retrieved": generation.retrieved, "timings": generation.timings,
                              "params": generation.params,
                              "empty_parts": [p.index for p, report in zip(generation.parts, generation.reports)
                                              if report["empty"]]})


def register_installed(models: Path = DEFAULT_MODELS) -> list[str]:
    """Register the pipelines whose bundles are present under `models`; returns their names."""
    folder = Path(models) / "partrag"
    if not (folder / "transformer" / "config.json").is_file():
        return []
    pipelines.register("generate", "partrag", PartRAGService(folder), {"bundle": str(folder)})
    return ["partrag"]
