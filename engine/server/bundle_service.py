"""The model bundles installed under models/, behind the engine server's requests.

At start-up every folder with a model_index.json is registered under its folder name for the
operation its pipeline class serves (models/partrag -> generate "partrag"), and for edits
when its class has a part editor (edit "partrag", on the same loaded networks); the networks load
on the first job (on the worker thread, so the server answers hello and heartbeats
meanwhile) and stay loaded. Requests pass on what the user gave; the pipeline fills in the
rest. A folder whose class this engine does not know is skipped with a warning.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

from bridge.errors import RequestRefused
from bridge.protocol import Result
from engine.pipelines.registry import has_editor, installed_bundles, operation_of
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

        generation = pipeline(
            request.image, params["parts"], steps=params["steps"], guidance=params["guidance"],
            seed=params["seed"], top_k=params["top_k"], progress=progress,
            check_cancelled=cancel_check(cancelled))
        empty = [p.index for p, report in zip(generation.parts, generation.reports)
                 if report["empty"]]
        return Result(generation.parts, {"retrieved": generation.retrieved,
                                         "timings": generation.timings,
                                         "params": {**generation.params,
                                                    "model": self.folder.name},
                                         "empty_parts": empty})


def cancel_check(cancelled):
    def check_cancelled() -> None:
        if cancelled():
            raise pipelines.JobCancelled
    return check_cancelled


class EditService:
    """Edits with the part editor over a BundleService's pipeline (loaded once for both)."""

    def __init__(self, bundle: BundleService):
        self.bundle = bundle
        self._editor = None  # made on the first edit (jobs run on the one worker thread)

    def editor(self):
        """The bundle's part editor over its loaded pipeline, with the retriever read once."""
        if self._editor is None:
            from engine.pipelines.registry import editor_over

            self._editor = editor_over(self.bundle.pipeline(), self.bundle.folder)
        return self._editor

    def __call__(self, request: pipelines.Request, progress, cancelled) -> Result:
        from engine.pipelines.editor import LibraryPart

        progress("load", 0.0)
        editor = self.editor()
        params = request.params
        position = {part.index: n for n, part in enumerate(request.parts)}
        source = None
        if params["source"] is not None:
            asset_id, _, part = params["source"].partition(":")
            if part and not part.isdigit():
                raise RequestRefused("invalid_parameter", f"source must be LIBRARY_ID or "
                                     f"LIBRARY_ID:PART, got {params['source']!r}")
            source = LibraryPart(asset_id, int(part or 0))
        parts = [replace(p, index=n) for n, p in enumerate(request.parts)]
        edit = editor(parts, [position[t] for t in params["targets"]], params["operation"],
                      image=request.image, source=source, alpha=params["alpha"],
                      strength=params["strength"], steps=params["steps"],
                      guidance=params["guidance"], seed=params["seed"], top_k=params["top_k"],
                      progress=progress, check_cancelled=cancel_check(cancelled))
        out = [replace(p, index=original.index) for p, original in zip(edit.parts, request.parts)]
        return Result(out, {"timings": edit.timings,
                            "params": {**edit.params, "model": self.bundle.folder.name},
                            "reports": edit.reports})


    def candidates(self, request: pipelines.Request, progress, cancelled) -> Result:
        """Library parts to swap in for the one part sent: the editor's search, each with
        its asset's thumbnail (arrays `thumbnails/<n>`)."""
        progress("load", 0.0)
        editor = self.editor()
        params = request.params
        found = editor.search(request.parts, 0, params["k"], params["label"])
        library = editor.pipeline.library
        listed, thumbnails = [], {}
        for n, source in enumerate(found):
            row = library.row(source.asset_id)
            listed.append({"asset_id": source.asset_id, "part": source.part,
                           "label": library.part_labels[library.part_rows(row)[source.part]],
                           "category": library.assets[row]["category"]})
            thumbnails[f"thumbnails/{n}"] = library.thumbnail_bytes(row)
        return Result([], {"candidates": listed}, thumbnails)


class BatchService:
    """Batches over a BundleService's loaded pipeline, embedded in the engine process: the
    same rows, files and manifest as `python -m engine batch` (engine/batch/)."""

    def __init__(self, bundle: BundleService):
        self.bundle = bundle

    def __call__(self, request: pipelines.Request, progress, cancelled) -> Result:
        from engine.batch.compute import PipelineSet
        from engine.batch.embedded import EmbeddedExecutor
        from engine.batch.log import LOG_NAME
        from engine.batch.rows import BatchInputError, read_rows
        from engine.batch.runner import run_batch

        progress("load", 0.0)
        params = request.params
        try:
            rows = read_rows(Path(params["input"]), parts=params["parts"], seed=params["seed"],
                             pipeline=request.pipeline)
        except BatchInputError as error:
            raise RequestRefused("invalid_batch_input", str(error)) from None
        loaded = {request.pipeline: self.bundle.pipeline()}
        executor = EmbeddedExecutor(PipelineSet(self.bundle.folder.parent, loaded=loaded))
        out = Path(params["out"])
        summary = run_batch(
            rows, out, executor, retry_failed=params["retry_failed"], blend=params["blend"],
            progress=lambda done, total, message: progress("batch", done / total, message),
            should_stop=cancelled, show_progress=False)
        return Result([], {"summary": summary.as_dict(), "manifest": str(out / LOG_NAME)})


def register_installed(models: Path) -> list[str]:
    """Register every bundle installed under `models`; returns their names."""
    names = []
    for folder in installed_bundles(models):
        try:
            operation = operation_of(folder)
        except ValueError as error:
            log.warning("skipping %s", error)
            continue
        service = BundleService(folder)
        pipelines.register(operation, folder.name, service, {"bundle": str(folder)})
        if operation == "generate":
            pipelines.register("batch", folder.name, BatchService(service),
                               {"bundle": str(folder)})
        if has_editor(folder):
            editing = EditService(service)
            pipelines.register("edit", folder.name, editing, {"bundle": str(folder)})
            pipelines.register("candidates", folder.name, editing.candidates,
                               {"bundle": str(folder)})
        names.append(folder.name)
    return names
