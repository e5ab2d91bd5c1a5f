"""The compute worker: one thread that runs queued jobs through their pipelines.

It never touches the client-facing socket; every event (progress, result, error) goes to
the server thread over an inproc socket, addressed with the client's routing identity.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback

import zmq

from bridge.errors import RequestRefused
from bridge.protocol import Message, Result, encode, encode_result, error_message
from engine.memory import release_free_memory

from .jobs import Job, JobQueue
from .pipelines import JobCancelled

log = logging.getLogger("partsmith.engine")

PROGRESS_INTERVAL = 0.1  # seconds; more frequent reports within one stage are dropped


def detect_device() -> str:
    """The compute device jobs will run on (imports torch, hence done by the worker)."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda ({torch.cuda.get_device_name(0)})"
    except Exception as error:  # no torch, or a broken CUDA install: pipelines will say more
        log.warning("no GPU available: %s", error)
    return "cpu"


class Worker(threading.Thread):
    def __init__(self, context: zmq.Context, queue: JobQueue, events_address: str):
        super().__init__(name="partsmith-worker", daemon=True)
        self.device: str | None = None  # set once the worker has started
        self.finished = 0  # jobs run to an end (result, error or cancellation)
        self._context = context
        self._queue = queue
        self._events_address = events_address
        self._send_lock = threading.Lock()  # pipelines may report progress from own threads

    def run(self) -> None:
        events = self._context.socket(zmq.PUSH)
        events.connect(self._events_address)
        try:
            self.device = detect_device()
            while (job := self._queue.next()) is not None:
                self._send(events, job, self._run(job, events))
                self.finished += 1
        finally:
            events.close(linger=1000)

    def _run(self, job: Job, events: zmq.Socket) -> list:
        """The encoded final message of `job`: its result, or why it has none."""
        log.info("job %s: %s with pipeline %r", job.id, job.request.operation, job.pipeline.name)
        reporter = _Progress(job, lambda message: self._send(events, job, encode(message)))
        try:
            result = job.pipeline.run(job.request, reporter, job.cancelled)
            if job.cancelled():
                raise JobCancelled
            if not isinstance(result, Result):
                raise TypeError(f"pipeline returned {type(result).__name__}, not a Result")
            return encode(encode_result(job.id, result))
        except JobCancelled:
            log.info("job %s cancelled: %s", job.id, job.cancel_text)
            return encode(error_message(job.id, job.cancel_code, job.cancel_text))
        except RequestRefused as refused:  # the request's fault: the user can fix it
            log.info("job %s refused (%s): %s", job.id, refused.code, refused.message)
            return encode(error_message(job.id, refused.code, refused.message))
        except Exception as error:
            log.error("job %s: pipeline %r failed\n%s", job.id, job.pipeline.name,
                      traceback.format_exc())
            text = (f"pipeline {job.pipeline.name!r} failed: {error or type(error).__name__} "
                    f"(a bug: the engine log has the details)")
            return encode(error_message(job.id, "pipeline_failed", text))
        finally:
            self._queue.finish(job)
            release_free_memory()  # or the heap fragments: ~40 MB per generation (memory.py)

    def _send(self, events: zmq.Socket, job: Job, frames: list) -> None:
        with self._send_lock:
            events.send_multipart([job.client, *frames], copy=False)


class _Progress:
    """The `progress(stage, fraction, message="")` callback handed to a pipeline."""

    def __init__(self, job: Job, send):
        self._job = job
        self._send = send
        self._last = 0.0

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        job = self._job
        if job.cancelled():
            raise JobCancelled
        if not isinstance(stage, str) or not math.isfinite(fraction):
            raise ValueError(f"progress({stage!r}, {fraction!r}): need a stage name and a "
                             "finite fraction")
        now = time.monotonic()
        if stage == job.stage and fraction < 1.0 and now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        job.stage, job.fraction = stage, min(max(float(fraction), 0.0), 1.0)
        self._send(Message("progress", job.id, {"stage": stage, "fraction": job.fraction,
                                                "message": str(message)}))
