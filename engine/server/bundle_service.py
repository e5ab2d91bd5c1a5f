"""The model bundles installed under models/, behind the engine server's requests.

At start-up every folder with a model_index.json is registered under its folder name for the
operation its pipeline class serves (models/partrag -> generate "partrag"); the networks load
on the first job (on the worker thread, so the server answers hello and heartbeats
meanwhile) and stay loaded. Requests pass on what the user gave; the pipeline fills in the
rest. A folder whose class this engine does not know is skipped with a warning.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from bridge.protocol import Result
from engine.pipelines.registry import installed_bundles, operation_of
from engine.server import pipelines

log = logging.getLogger(__name__)


class BundleService:
    """Loads one bundle's pipeline lazily, once, and runs requests through it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._pipeline = None
        self._lock = threading.Lock()

    def pipeline(self):
        with self._lock:
            if self._pipeline is None:
                from engine.device import resolve_device
                from engine.pipelines.registry import load_pipeline

                self._pipeline = load_pipeline(self.folder, resolve_device("auto"))
            return self._pipeline

    def __call__(self, request: pipelines.Request, progress, cancelled) -> Result:
        progress("load", 0.0)
        pipeline = self.pipeline()
        params = request.params

        def check_cancelled() -> None:
            if cancelled():
                raise pipelines.JobCancelled

        generation = pipeline(
            request.image, params["parts"], steps=params["steps"], guidance=params["guidance"],
            seed=params["seed"], top_k=params["top_k"], progress=progress,
            check_cancelled=check_cancelled)
        empty = [p.index for p, report in zip(generation.parts, generation.reports)
                 if report["empty"]]
        return Result(generation.parts, {"retrieved": generation.retrieved,
                                         "timings": generation.timings,
                                         "params": generation.params, "empty_parts": empty})


def register_installed(models: Path) -> list[str]:
    """Register every bundle installed under `models`; returns their names."""
    names = []
    for folder in installed_bundles(models):
        try:
            operation = operation_of(folder)
        except ValueError as error:
            log.warning("skipping %s", error)
            continue
        pipelines.register(operation, folder.name, BundleService(folder), {"bundle": str(folder)})
        names.append(folder.name)
    return names
