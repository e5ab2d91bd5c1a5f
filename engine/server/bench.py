"""`python -m engine bench bridge`: latency, throughput and memory figures of the bridge.

Starts its own engine subprocess on a free loopback port with one extra pipeline,
"bench-echo" (an edit that returns the parts it was sent), so the figures measure the
protocol, the sockets and the job machinery and nothing else.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bridge.client import EngineClient
from bridge.protocol import Part, Result

from . import pipelines

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"engine ready at (tcp://\S+) ")
MB = 1e6


def register_pipelines() -> None:
    """Called by `serve --pipeline-module engine.server.bench` in the bench's engine."""
    pipelines.register("edit", "bench-echo", lambda request, progress, cancelled:
                       Result(request.parts, {}))


def bench_bridge() -> None:
    with tempfile.TemporaryDirectory() as folder, engine_process(
            Path(folder) / "engine.log", "--pipeline-module", "engine.server.bench") as address:
        with EngineClient(address) as client:
            tiny = _parts(1, 4)
            client.edit(tiny, [0], pipeline="bench-echo")  # waits for the worker to start
            status_ms = _median_ms(lambda: client.status(), 200)
            job_ms = _median_ms(lambda: client.edit(tiny, [0], pipeline="bench-echo"), 200)

            big = _parts(8, 100_000)
            payload = sum(a.nbytes for p in big for a in (p.vertices, p.faces, p.transform))
            big_ms = _median_ms(lambda: client.edit(big, [0], pipeline="bench-echo"), 10)

            for _ in range(100):
                client.edit(tiny, [0], pipeline="bench-echo")
            before = client.status()["rss_bytes"]
            for _ in range(1000):
                client.edit(tiny, [0], pipeline="bench-echo")
            after = client.status()["rss_bytes"]

    print(f"bridge benchmark (engine subprocess on loopback, {os.cpu_count()} CPUs)")
    print(f"  small request round trip (status)              {status_ms:8.3f} ms median of 200")
    print(f"  small job round trip (1 part, 4 vertices)      {job_ms:8.3f} ms median of 200")
    print(f"  8 parts x 100k vertices round trip             {big_ms:8.1f} ms median of 10 "
          f"({payload / MB:.1f} MB each way)")
    throughput = 2 * payload / MB / (big_ms / 1e3)
    print(f"  8 parts x 100k vertices throughput             {throughput:8.0f} MB/s "
          "(both directions)")
    if before is None or after is None:
        print("  engine memory growth over 1,000 requests       (RSS not available on this OS)")
    else:
        print(f"  engine memory growth over 1,000 requests       {(after - before) / MB:8.1f} MB "
              f"(RSS {before / MB:.1f} -> {after / MB:.1f} MB)")


@contextmanager
def engine_process(log_path: Path, *arguments: str):
    """An engine subprocess on a free loopback port, started with `arguments`; yields its
    address."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--address", "tcp://127.0.0.1:*",
             *arguments], cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not (match := READY.search(log_path.read_text(errors="replace"))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bench engine did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _parts(count: int, vertices: int) -> list[Part]:
    rng = np.random.default_rng(0)
    return [Part(rng.standard_normal((vertices, 3), dtype=np.float32),
                 rng.integers(0, vertices, (2 * vertices, 3), dtype=np.int32),
                 np.eye(4), f"bench_part{n}", n) for n in range(count)]


def _median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3

