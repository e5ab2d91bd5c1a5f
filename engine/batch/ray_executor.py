"""Rows computed on a Ray cluster (`--ray local` starts one on this machine, `--ray ADDRESS`
joins one): one actor per GPU, or per CPU on a cluster without GPUs, each loading the
pipelines once and taking rows as the driver hands them out. Results come back as arrays;
the driver writes them (atomically, with the manifest), so a worker that dies mid-row loses
nothing: its row runs again on another worker (up to `max_retries` more times) and a new
worker takes the dead one's place. Ray is imported only here, only for `--ray`.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

from engine.batch.compute import ROW_THREADS, Outcome, PipelineSet, RowJob, compute_row
from engine.batch.embedded import POLL_SECONDS, StopSignal

log = logging.getLogger("partsmith.batch")

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "partsmith"
ACTOR_PREFIX = "partsmith-batch-"  # actors are named ACTOR_PREFIX + a number
DEFAULT_RETRIES = 2
# Not uploaded to a remote cluster with the code: data, caches, environments, outputs.
UPLOAD_EXCLUDES = [".git", ".venv", "data", "out", "dist", "docs", "tests", "**/__pycache__"]


class BatchWorker:
    """The actor: pipelines loaded once, rows computed with ROW_THREADS threads."""

    def __init__(self, models: str, device: str):
        import torch

        torch.set_num_threads(ROW_THREADS)
        self.pipelines = PipelineSet(Path(models), device)
        self.where = f"{socket.gethostname()}"

    def check(self, pipeline: str) -> None:
        self.pipelines.check(pipeline)

    def compute(self, job: RowJob, label: str) -> Outcome:
        return compute_row(self.pipelines, job, f"ray/{self.where}/{label}")


class RayExecutor:
    def __init__(self, address: str, models: Path, *, workers: int | None = None,
                 max_retries: int = DEFAULT_RETRIES, device: str = "auto"):
        """`address`: "local" or a cluster address (ray://host:10001 or host:6379)."""
        import ray

        self.ray = ray
        self.max_retries = max_retries
        models = Path(models).resolve()
        if address == "local":
            ray.init(runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
                     include_dashboard=False, logging_level=logging.WARNING,
                     namespace=NAMESPACE)
            self.models = str(models)
        else:  # the code (and models/ when it is the repository's) travel to the cluster
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING,
                     runtime_env={"working_dir": str(ROOT), "excludes": UPLOAD_EXCLUDES})
            self.models = (str(models.relative_to(ROOT)) if models.is_relative_to(ROOT)
                           else str(models))
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.device = "cuda" if self.gpus else device
        self.workers = workers or self.gpus or max(1, int(resources.get("CPU", 1)))
        self._options = ({"num_gpus": 1, "num_cpus": 1} if self.gpus else {"num_cpus": 1})
        self._actor_class = ray.remote(BatchWorker)
        self._made = 0
        self.actors = [self._new_actor() for _ in range(self.workers)]

    def describe(self) -> str:
        kind = f"{self.gpus} GPU(s)" if self.gpus else "CPUs"
        return f"Ray ({kind}), {self.workers} worker(s)"

    def _new_actor(self):
        name = f"{ACTOR_PREFIX}{self._made}"
        self._made += 1
        actor = self._actor_class.options(name=name, max_restarts=0, **self._options).remote(
            self.models, self.device)
        return name, actor

    def check(self, pipeline: str) -> None:
        """Ask a worker whether it can load `pipeline` (a RequestRefused otherwise)."""
        self.ray.get(self.actors[0][1].check.remote(pipeline))

    def run(self, jobs: Iterable[RowJob], stop: StopSignal) -> Iterator[Outcome]:
        """Outcomes in the order rows finish; a row whose worker died goes first in line
        again, with its attempt counted."""
        ray = self.ray
        jobs, again = iter(jobs), deque()
        idle = deque(self.actors)
        running = {}  # ObjectRef -> (job, attempt, (name, actor))
        exhausted = False
        try:
            while True:
                while idle and not stop.check():
                    if again:
                        job, attempt = again.popleft()
                    else:
                        job = None if exhausted else next(jobs, None)
                        if job is None:
                            exhausted = True
                            break
                        attempt = 1
                    name, actor = idle.popleft()
                    running[actor.compute.remote(job, name)] = (job, attempt, (name, actor))
                if not running:
                    if stop.is_set() or (exhausted and not again):
                        return
                    continue
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
                for ref in done:
                    job, attempt, worker = running.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as e:  # compute_row itself never raises
                        log.warning("worker %s died on row %s (attempt %d): %s", worker[0],
                                    job.row.name, attempt, e)
                        idle.append(self._replace(worker))
                        if attempt <= self.max_retries:
                            again.append((job, attempt + 1))
                        else:
                            yield Outcome(job.row.name, code="worker_lost", attempts=attempt,
                                          message=f"the worker computing it died {attempt} "
                                                  f"time(s) (retries: {self.max_retries})")
                        continue
                    outcome.attempts = attempt
                    idle.append(worker)
                    yield outcome
        except BaseException:
            stop.set()
            raise

    def _replace(self, worker):
        self.actors.remove(worker)
        self.actors.append(self._new_actor())
        return self.actors[-1]

    def close(self) -> None:
        for _, actor in self.actors:
            self.ray.kill(actor)
        self.ray.shutdown()
