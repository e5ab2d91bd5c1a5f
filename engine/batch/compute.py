"""One row of a batch computed: image bytes in, a Generation (arrays) or a failure out.

The same `compute_row` runs in the embedded executor's threads and in every Ray actor, so a
row's outputs depend only on its image, its settings, its seed and the model: every row is
computed with ROW_THREADS intra-op threads wherever it runs (on the CPU, PyTorch's results
change in the last bits with the thread count: a 2-thread and a 1-thread run of the same
generation differ by ~1e-6 in the latents and in marching-cubes topology), and throughput
comes from computing several rows at once instead.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import ProtocolError, RequestRefused
from engine.batch.rows import Row

log = logging.getLogger("partsmith.batch")

ROW_THREADS = 1


@dataclass(frozen=True)
class RowJob:
    row: Row
    data: bytes  # the image file's bytes: workers on other machines cannot read the path
    digest: str  # sha256 of data


@dataclass
class Outcome:
    name: str
    generation: object | None = None  # engine.pipelines.partrag.Generation when it worked
    code: str = ""  # why not, as the bridge's error codes
    message: str = ""
    seconds: float = 0.0  # compute wall time on the worker
    worker: str = ""  # which worker computed it
    attempts: int = 1  # > 1 when a worker died under the row and it ran again
    timings: dict = field(default_factory=dict)  # the generation's stages

    @property
    def ok(self) -> bool:
        return self.generation is not None


class BatchStopped(Exception):
    """Raised inside a row to stop it (Ctrl+C, or the bridge job was cancelled)."""


@contextmanager
def row_threads():
    """Run the block with ROW_THREADS intra-op threads, restoring the count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(ROW_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class PipelineSet:
    """The generation pipelines of a models folder by name (models/<name>), each loaded once
    on first use and shared by the threads that compute rows."""

    def __init__(self, models: Path, device: str = "auto", loaded: dict | None = None):
        """`loaded`: pipelines already in memory by name (the engine server's)."""
        self.models, self.device = Path(models), device
        self._loaded = dict(loaded or {})
        self._lock = threading.Lock()

    def check(self, name: str) -> None:
        """Refuse, with a code, a pipeline name this models folder cannot generate with."""
        from engine.pipelines.bundle import MODEL_INDEX
        from engine.pipelines.registry import operation_of

        if name in self._loaded:
            return
        folder = self.models / name
        if not (folder / MODEL_INDEX).is_file():
            raise RequestRefused("model_unavailable", f"no model bundle {folder} for the "
                                 f"pipeline {name!r}")
        try:
            operation = operation_of(folder)
        except ValueError as error:
            raise RequestRefused("model_unavailable", str(error)) from None
        if operation != "generate":
            raise RequestRefused("unknown_pipeline", f"{folder} serves {operation}, not "
                                 f"generate")

    def get(self, name: str):
        with self._lock:
            if name not in self._loaded:
                from engine.device import resolve_device
                from engine.pipelines.registry import load_pipeline

                self.check(name)
                self._loaded[name] = load_pipeline(self.models / name,
                                                   resolve_device(self.device))
            return self._loaded[name]


def compute_row(pipelines: PipelineSet, job: RowJob, worker: str = "",
                stop: threading.Event | None = None) -> Outcome:
    """Run one row; a failure the row's input or settings cause comes back as its code and
    message, anything else as pipeline_failed, and the batch goes on either way. A set `stop`
    ends the row early with BatchStopped."""
    from engine.render.image_prep import decode_image

    def check_cancelled() -> None:
        if stop is not None and stop.is_set():
            raise BatchStopped

    row, started = job.row, time.perf_counter()
    outcome = Outcome(row.name, worker=worker)
    try:
        if row.problem:
            raise RequestRefused("invalid_parameter", row.problem)
        image = decode_image(job.data)
        pipeline = pipelines.get(row.pipeline)
        outcome.generation = pipeline(image, row.parts, seed=row.seed,
                                      check_cancelled=check_cancelled, **row.overrides)
        outcome.timings = outcome.generation.timings
    except (RequestRefused, ProtocolError) as refused:
        outcome.code, outcome.message = refused.code, refused.message
    except BatchStopped:
        raise
    except Exception as error:
        log.error("row %s failed\n%s", row.name, traceback.format_exc())
        outcome.code = "pipeline_failed"
        outcome.message = f"{type(error).__name__}: {error}"
    outcome.seconds = time.perf_counter() - started
    return outcome
