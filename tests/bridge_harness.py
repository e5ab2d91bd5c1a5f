"""Engine subprocesses and raw sockets for the bridge tests (loopback only)."""

import faulthandler
import io
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from PIL import Image

from bridge.protocol import Message, Part, decode, encode

REPO = Path(__file__).resolve().parents[1]
READY = re.compile(r"engine ready at (tcp://127\.0\.0\.1:\d+)")
TEST_TIMEOUT = 120  # seconds; no test comes close
_numbers = itertools.count()


@pytest.fixture(autouse=True)
def watchdog():
    """Abort the run with every thread's traceback if a test hangs (import this fixture
    into each bridge test module; pytest-timeout is not available)."""
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


class EngineProcess:
    """`python -m engine serve` with the test pipelines, on a loopback address."""

    def __init__(self, log_dir: Path, *args: str, address: str = "tcp://127.0.0.1:*"):
        self.log_path = log_dir / f"engine-{next(_numbers)}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])}
        # No bundles unless a test gives its own --models (the last one wins): the shipped
        # models/ must not change what these tests see.
        no_models = log_dir / "no-models"
        no_models.mkdir(exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine", "serve", "--address", address,
                 "--models", str(no_models), "--pipeline-module", "bridge_test_pipeline", *args],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.address = self._wait_ready(timeout=30.0)

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = READY.search(self.log())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"engine did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class RawClient:
    """A bare DEALER socket, for sending messages the real client would never send."""

    def __init__(self, address: str):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(address)

    def send(self, frames: list) -> None:
        self.socket.send_multipart(frames, copy=False)

    def receive(self, timeout: float = 10.0) -> Message:
        if not self.socket.poll(timeout * 1000):
            raise TimeoutError(f"no reply within {timeout} s")
        return decode(self.socket.recv_multipart())

    def request(self, message: Message, until: tuple = ("result", "error", "hello", "status"),
                timeout: float = 10.0) -> Message:
        """Send `message`; return the first reply of a type in `until` for its job."""
        self.send(encode(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = self.receive(max(deadline - time.monotonic(), 0.001))
            if reply.job == message.job and reply.type in until:
                return reply

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def png_bytes(width: int = 16, height: int = 12, color=(10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def big_parts(count: int, vertices: int, seed: int = 0) -> list:
    """`count` parts of `vertices` vertices (and twice as many faces), random content."""
    rng = np.random.default_rng(seed)
    parts = []
    for index in range(count):
        transform = np.eye(4)
        transform[:3, :] = rng.random((3, 4))
        parts.append(Part(rng.standard_normal((vertices, 3), dtype=np.float32),
                          rng.integers(0, vertices, (2 * vertices, 3), dtype=np.int32),
                          transform, f"part_{index}", index, f"m{index}"))
    return parts
