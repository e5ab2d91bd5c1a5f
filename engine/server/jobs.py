"""Jobs and the queue in front of the single compute worker.

The GPU is one resource, so jobs run one at a time in arrival order. The server thread
submits and cancels; the worker thread takes and finishes; one condition guards both.
Jobs are keyed by (client identity, job id), so a client can only see and cancel its own.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from bridge.errors import ProtocolError

from .pipelines import Pipeline, Request

MAX_WAITING = 64


@dataclass(eq=False)
class Job:
    client: bytes  # ZeroMQ routing identity of the client that submitted it
    id: str
    request: Request
    pipeline: Pipeline
    state: str = "queued"  # queued | running
    stage: str = ""
    fraction: float = 0.0
    cancel_code: str = ""
    cancel_text: str = ""
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self, code: str, text: str) -> None:
        """Ask the job to stop; the first reason given is the one reported."""
        if not self._cancelled.is_set():
            self.cancel_code, self.cancel_text = code, text
            self._cancelled.set()

    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class JobQueue:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._closed = False

    def submit(self, job: Job) -> int:
        """Queue `job`; returns how many jobs are ahead of it."""
        with self._condition:
            if self._closed:
                raise ProtocolError("shutting_down", "the engine is shutting down", job.id)
            if self._find(job.client, job.id) is not None:
                raise ProtocolError("duplicate_job", f"job {job.id!r} is already queued or "
                                    "running; use a new job id", job.id)
            if len(self._waiting) >= MAX_WAITING:
                raise ProtocolError("queue_full", f"{MAX_WAITING} jobs are already waiting; "
                                    "try again when some have finished", job.id)
            self._waiting.append(job)
            self._condition.notify()
            return len(self._waiting) - 1 + (self._running is not None)

    def next(self) -> Job | None:
        """Block until a job is waiting and mark it running; None once the queue is closed."""
        with self._condition:
            while not self._waiting and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            self._running = self._waiting.popleft()
            self._running.state = "running"
            return self._running

    def finish(self, job: Job) -> None:
        with self._condition:
            if self._running is job:
                self._running = None

    def cancel(self, client: bytes, job_id: str, code: str, text: str) -> Job | None:
        """Cancel one job. A waiting job is removed and returned (the caller reports it);
        a running job is flagged and reported by the worker when it stops."""
        with self._condition:
            job = self._find(client, job_id)
            if job is None:
                raise ProtocolError("unknown_job", f"no queued or running job {job_id!r} "
                                    "(it may have finished already)", job_id)
            job.cancel(code, text)
            if job.state == "queued":
                self._waiting.remove(job)
                return job
            return None

    def cancel_client(self, client: bytes, code: str, text: str) -> list[Job]:
        """Cancel every job of `client`; returns the waiting ones, which are removed."""
        with self._condition:
            jobs = [job for job in self._all() if job.client == client]
            for job in jobs:
                job.cancel(code, text)
            waiting = [job for job in jobs if job.state == "queued"]
            for job in waiting:
                self._waiting.remove(job)
            return waiting

    def close(self, code: str, text: str) -> list[Job]:
        """Stop accepting jobs, cancel all; returns the waiting jobs, which are removed."""
        with self._condition:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            for job in self._all() + waiting:
                job.cancel(code, text)
            self._condition.notify_all()
            return waiting

    def clients(self) -> set[bytes]:
        with self._condition:
            return {job.client for job in self._all()}

    def describe(self, client: bytes) -> dict:
        """Queue length and the state of `client`'s jobs, for `status` replies."""
        with self._condition:
            jobs = {}
            for position, job in enumerate(self._all()):
                if job.client == client:
                    jobs[job.id] = {"state": job.state, "position": position,
                                    "stage": job.stage, "fraction": job.fraction}
            return {"queued": len(self._waiting), "running": self._running is not None,
                    "jobs": jobs}

    def _all(self) -> list[Job]:
        return ([self._running] if self._running else []) + list(self._waiting)

    def _find(self, client: bytes, job_id: str) -> Job | None:
        return next((j for j in self._all() if j.client == client and j.id == job_id), None)
