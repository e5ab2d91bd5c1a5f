"""The default executor: rows computed in this process, `workers` at a time on threads over
one load of each pipeline (PyTorch releases the GIL inside its kernels, so two 1-thread rows
at once use two cores about as well as one 2-thread row, and stay thread-count independent)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Iterable, Iterator

from engine.batch.compute import (BatchStopped, Outcome, PipelineSet, RowJob, compute_row,
                                  row_threads)

POLL_SECONDS = 0.2


class StopSignal(threading.Event):
    """Set to stop a batch; `check()` also sets it when the caller's `should_stop()` says so
    (the bridge job was cancelled), and is polled while rows run."""

    def __init__(self, should_stop=None):
        super().__init__()
        self._should_stop = should_stop

    def check(self) -> bool:
        if not self.is_set() and self._should_stop is not None and self._should_stop():
            self.set()
        return self.is_set()


def default_workers() -> int:
    """One row per core this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class EmbeddedExecutor:
    def __init__(self, pipelines: PipelineSet, workers: int | None = None):
        self.pipelines = pipelines
        self.workers = workers or default_workers()

    def describe(self) -> str:
        return f"embedded, {self.workers} row(s) at a time"

    def run(self, jobs: Iterable[RowJob], stop: StopSignal) -> Iterator[Outcome]:
        """Outcomes in the order rows finish; at most 2 × workers rows read ahead."""
        jobs = iter(jobs)
        with row_threads(), ThreadPoolExecutor(self.workers,
                                               thread_name_prefix="partsmith-row") as pool:
            running = set()
            try:
                while True:
                    while len(running) < 2 * self.workers and not stop.check():
                        job = next(jobs, None)
                        if job is None:
                            break
                        running.add(pool.submit(self._compute, job, stop))
                    if not running:
                        return
                    done, running = wait(running, timeout=POLL_SECONDS,
                                         return_when=FIRST_COMPLETED)
                    for future in done:
                        try:
                            yield future.result()
                        except BatchStopped:
                            pass
            except BaseException:  # Ctrl+C or a stopped generator: in-flight rows end early
                stop.set()
                raise

    def _compute(self, job: RowJob, stop: StopSignal) -> Outcome:
        return compute_row(self.pipelines, job, f"embedded/{threading.current_thread().name}",
                           stop)

    def close(self) -> None:
        pass
