"""Client for the Partsmith engine: blocking calls for scripts, non-blocking job handles
for Blender timers.

    with EngineClient() as client:
        result = client.generate("chair.png", parts=6, seed=1)   # blocks; Result
        job = client.submit_generate("chair.png")                # returns at once
        job.poll()        # JobStatus(state, stage, fraction, ...) - never blocks
        job.result()      # blocks until done; raises EngineError / JobCancelled

A background thread owns the ZeroMQ socket. It sends heartbeats while jobs are in
flight, so the engine keeps them even while Blender is busy, and it notices a dead
engine within HEARTBEAT_TIMEOUT; Job.poll() only reads memory.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import zmq
import zmq.auth

from .errors import EngineError, EngineUnavailable, JobCancelled, ProtocolError
from .protocol import (DEFAULT_ADDRESS, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, JOB_TYPES,
                       MAX_REQUEST_BYTES, Message, Result, decode, decode_result, encode,
                       encode_parts, validate_request)

log = logging.getLogger("partsmith.bridge")

_CANCEL_CODES = ("cancelled", "shutting_down")


@dataclass(frozen=True)
class JobStatus:
    state: str  # sent | queued | running | done | failed | cancelled
    stage: str = ""
    fraction: float = 0.0  # of the whole job, 0..1
    message: str = ""
    position: int | None = None  # jobs ahead of this one while queued


class Job:
    """Handle on one request. Its state is kept current by the client's I/O thread."""

    def __init__(self, client: EngineClient, job_id: str, kind: str):
        self.id = job_id
        self.type = kind
        self.sent_at = time.monotonic()
        self._client = client
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._status = JobStatus("sent")
        self._result = None
        self._error: EngineError | None = None

    def poll(self) -> JobStatus:
        """The latest known state; never blocks."""
        with self._lock:
            return self._status

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def result(self, timeout: float | None = None):
        """Wait for the outcome: a Result for jobs, a dict for hello/status/shutdown.
        Raises EngineError (JobCancelled, EngineUnavailable) or TimeoutError."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"{self.type} job {self.id} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        """Ask the engine to stop this job; it ends as JobCancelled (unless already done)."""
        if not self.done:
            self._client._post_message(Message("cancel", self.id))

    def _update(self, **changes) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _finish(self, result=None, error: EngineError | None = None) -> None:
        state = "done" if error is None else (
            "cancelled" if isinstance(error, JobCancelled) else "failed")
        with self._lock:
            self._result, self._error = result, error
            message = "" if error is None else error.message
            self._status = replace(self._status, state=state, message=message,
                                   fraction=1.0 if error is None else self._status.fraction)
        self._finished.set()


class EngineClient:
    """Connection to one engine. Thread-safe; close() it (or use `with`) when done.

    `timeout` bounds how long a request waits for a first answer from an engine that may
    not be running; once the engine has answered, heartbeats detect its death instead,
    so long jobs need no timeout. `keys` is a client key folder made by
    `python -m engine keys` (needed when the engine uses CurveZMQ).
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float = 10.0,
                 keys: str | Path | None = None):
        self.address = address
        self.timeout = timeout
        self._keys = _load_keys(Path(keys)) if keys is not None else None
        # The process-wide context is never terminated: zmq_ctx_term can hang after a
        # failed CURVE handshake, and close() must never freeze Blender.
        self._context = zmq.Context.instance()
        self._jobs: dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        self._closed = False
        pipe = f"inproc://partsmith-client-{uuid.uuid4().hex}"
        self._inbox = self._context.socket(zmq.PAIR)  # used only by the I/O thread
        self._inbox.bind(pipe)
        self._outbox = self._context.socket(zmq.PAIR)  # callers' end, under a lock
        self._outbox.connect(pipe)
        self._outbox_lock = threading.Lock()
        self._socket = self._open_socket()  # I/O thread only; a bad address fails here
        self._backlog: deque[list] = deque()  # I/O thread only: requests not yet sent
        self._thread = threading.Thread(target=self._run, name="partsmith-bridge", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ requests

    def hello(self) -> dict:
        """Engine versions, capabilities, device, installed models, library size."""
        return self.submit("hello", {"client": "partsmith bridge"}).result()

    def status(self) -> dict:
        """Queue, uptime, memory, and the state of this client's jobs."""
        return self.submit("status").result()

    def shutdown(self) -> None:
        """Ask the engine to stop; running and queued jobs end with `shutting_down`."""
        self.submit("shutdown").result()

    def submit_generate(self, image, *, parts: int | None = None, steps: int | None = None,
                        guidance: float | None = None, seed: int | None = None,
                        top_k: int | None = None, pipeline: str | None = None) -> Job:
        """Start generating a part-structured object from `image` (a file path, encoded
        PNG/JPEG/WebP bytes, or a uint8 (H, W, 3|4) array). None means engine default;
        `top_k` is the number of retrieved exemplars (0 = retrieval off)."""
        body = _present(parts=parts, steps=steps, guidance=guidance, seed=seed, top_k=top_k,
                        pipeline=pipeline)
        return self.submit("generate", body, {"image": _image(image)})

    def generate(self, image, **options) -> Result:
        """Generate and wait; returns a Result whose `parts` are the generated parts."""
        return self.submit_generate(image, **options).result()

    def submit_batch(self, source: str, out: str, *, parts: int | None = None,
                     seed: int | None = None, blend: bool | None = None,
                     retry_failed: bool | None = None, pipeline: str | None = None) -> Job:
        """Start a batch on the engine's machine: `source` a folder of images or a CSV/JSONL
        manifest there, `out` the folder to write (one asset folder per image and
        batch.jsonl); paths are the engine's. Progress events count the images; the result's
        metadata has the `summary`."""
        body = _present(input=str(source), out=str(out), parts=parts, seed=seed, blend=blend,
                        retry_failed=retry_failed, pipeline=pipeline)
        return self.submit("batch", body)

    def submit_edit(self, parts: list, targets: list[int], *, operation: str | None = None,
                    image=None, source: str | None = None, alpha: float | None = None,
                    strength: float | None = None, steps: int | None = None,
                    guidance: float | None = None, seed: int | None = None,
                    top_k: int | None = None, pipeline: str | None = None) -> Job:
        """Start an edit of the parts whose indices are in `targets`, keeping the rest:
        `operation` refine (default), swap or place (`source` "LIBRARY_ID[:PART]"),
        interpolate (`alpha`), assemble. Parts carry their latents when they have them."""
        metas, arrays = encode_parts(parts)
        body = _present(parts=metas, targets=list(targets), operation=operation, source=source,
                        alpha=alpha, strength=strength, steps=steps, guidance=guidance,
                        seed=seed, top_k=top_k, pipeline=pipeline)
        if image is not None:
            arrays["image"] = _image(image)
        return self.submit("edit", body, arrays)

    def edit(self, parts: list, targets: list[int], **options) -> Result:
        return self.submit_edit(parts, targets, **options).result()

    def submit_candidates(self, part, *, k: int | None = None, label: str | None = None,
                          pipeline: str | None = None) -> Job:
        """Start looking up library parts to swap in for `part` (its label's parts, closest
        in shape first); the result's metadata lists them, arrays `thumbnails/<n>` show them."""
        metas, arrays = encode_parts([part])
        return self.submit("candidates", _present(parts=metas, k=k, label=label,
                                                  pipeline=pipeline), arrays)

    def candidates(self, part, **options) -> Result:
        return self.submit_candidates(part, **options).result()

    def submit_library_search(self, image, *, k: int | None = None, level: str | None = None,
                              category: str | None = None) -> Job:
        """Start searching the part library for exemplars matching `image`."""
        body = _present(k=k, level=level, category=category)
        return self.submit("library.search", body, {"image": _image(image)})

    def library_search(self, image, **options) -> Result:
        return self.submit_library_search(image, **options).result()

    def submit_library_asset(self, asset_id: str, *, thumbnail: bool | None = None,
                             parts: bool | None = None) -> Job:
        """Start fetching one library asset (its thumbnail and/or parts)."""
        body = _present(asset_id=asset_id, thumbnail=thumbnail, parts=parts)
        return self.submit("library.asset", body)

    def library_asset(self, asset_id: str, **options) -> Result:
        return self.submit_library_asset(asset_id, **options).result()

    def submit(self, kind: str, body: dict | None = None, arrays: dict | None = None) -> Job:
        """Send any request; the arrays are sent without copying, so leave them unchanged
        until the job is accepted."""
        if kind in ("cancel", "heartbeat"):
            raise ValueError(f"{kind!r} gets no reply of its own; use Job.cancel()")
        job = Job(self, uuid.uuid4().hex, kind)
        message = Message(kind, job.id, body or {}, arrays or {})
        if kind in JOB_TYPES:  # a bad request fails here, engine or not
            try:
                validate_request(message)
            except ProtocolError as error:
                raise EngineError(error.code, error.message) from None
        frames = encode(message)
        size = sum(memoryview(frame).nbytes for frame in frames)
        if size > MAX_REQUEST_BYTES:
            raise EngineError("message_too_large", f"the {kind} request is {size:,} bytes; the "
                              f"engine takes at most {MAX_REQUEST_BYTES:,} (send fewer or "
                              f"smaller parts, or a smaller image)")
        with self._jobs_lock:
            if self._closed or not self._thread.is_alive():
                raise RuntimeError("this EngineClient is closed")
            self._jobs[job.id] = job
        self._post([b"send", *frames])
        return job

    def close(self) -> None:
        """Cancel unfinished jobs, stop the I/O thread and release the socket."""
        with self._jobs_lock:
            if self._closed:
                return
            self._closed = True
        self._post([b"close"])
        self._thread.join(timeout=5.0)
        self._outbox.close(linger=0)

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _post_message(self, message: Message) -> None:
        self._post([b"send", *encode(message)])

    def _post(self, frames: list) -> None:
        with self._outbox_lock:
            self._outbox.send_multipart(frames, copy=False)

    # ------------------------------------------------------------------ I/O thread

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as error:  # a bug here must not leave callers waiting forever
            log.exception("bridge I/O thread failed")
            failure = EngineError("client_error", f"bridge client failed: {error}")
            self._fail_all(lambda job: failure)
        finally:
            self._fail_all(lambda job: EngineError("client_closed", "the EngineClient was closed"))
            self._socket.close(linger=200)  # time for the cancels sent on close
            self._inbox.close(linger=0)

    def _loop(self) -> None:
        last_heard = last_beat = float("-inf")
        poller = zmq.Poller()
        poller.register(self._inbox, zmq.POLLIN)
        poller.register(self._socket, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(HEARTBEAT_INTERVAL * 500))
            if self._inbox in ready and self._forward():
                return
            if self._socket in ready:
                last_heard = time.monotonic()
                self._receive()
            self._flush()
            now = time.monotonic()
            with self._jobs_lock:
                pending = list(self._jobs.values())
            if pending and now - last_beat >= HEARTBEAT_INTERVAL:
                self._send_now(encode(Message("heartbeat", None)))
                last_beat = now
            if any(self._expired(job, now, last_heard) for job in pending):
                self._fail_all(lambda job: self._unavailable(job, last_heard))
                poller.unregister(self._socket)
                self._socket.close(linger=0)  # drop queued messages; reconnect afresh
                self._socket = self._open_socket()
                self._backlog.clear()
                poller.register(self._socket, zmq.POLLIN)

    def _forward(self) -> bool:
        """Queue what callers posted; True once close() asked the thread to stop."""
        while True:
            try:
                frames = self._inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            if frames[0].bytes == b"close":
                with self._jobs_lock:
                    unfinished = [job.id for job in self._jobs.values() if job.type in JOB_TYPES]
                for job_id in unfinished:
                    self._send_now(encode(Message("cancel", job_id)))
                return True
            self._backlog.append(frames[1:])

    def _flush(self) -> None:
        """Send the backlog in order, as far as the socket takes it without blocking
        (it blocks while no connection is up, e.g. when the CURVE handshake fails)."""
        while self._backlog:
            if not self._send_now(self._backlog[0]):
                return
            self._backlog.popleft()

    def _send_now(self, frames: list) -> bool:
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False

    def _receive(self) -> None:
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message = decode(frames)
            except ProtocolError as error:
                if error.code == "unsupported_protocol":  # nothing this engine says can be read
                    self._fail_all(lambda job, error=error: EngineError(error.code, error.message))
                    continue
                log.warning("ignoring malformed message from the engine: %s", error)
                continue
            with self._jobs_lock:
                job = self._jobs.get(message.job)
            if job is not None:
                self._apply(job, message)

    def _apply(self, job: Job, message: Message) -> None:
        body = message.body
        if message.type == "progress":
            job._update(state="running", stage=str(body.get("stage", "")),
                        fraction=float(body.get("fraction", 0.0)),
                        message=str(body.get("message", "")), position=None)
        elif message.type == "accepted" and job.type != "shutdown":
            job._update(state="queued", position=body.get("position"))
        elif message.type == "error":
            code, text = body.get("code", "unknown"), body.get("message", "")
            kind = JobCancelled if code in _CANCEL_CODES else EngineError
            self._finish(job, error=kind(code, text))
        elif message.type == "result":
            try:
                self._finish(job, result=decode_result(message))
            except ProtocolError as error:
                self._finish(job, error=EngineError("bad_result", f"engine sent an invalid "
                                                    f"result: {error.message}"))
        elif message.type in ("hello", "status", "accepted"):
            self._finish(job, result=body)

    def _finish(self, job: Job, result=None, error: EngineError | None = None) -> None:
        with self._jobs_lock:
            self._jobs.pop(job.id, None)
        job._finish(result, error)

    def _fail_all(self, make_error) -> None:
        with self._jobs_lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            job._finish(error=make_error(job))

    def _expired(self, job: Job, now: float, last_heard: float) -> bool:
        if last_heard >= job.sent_at:
            return now - last_heard > HEARTBEAT_TIMEOUT
        return now - job.sent_at > self.timeout

    def _unavailable(self, job: Job, last_heard: float) -> EngineUnavailable:
        if last_heard >= job.sent_at:
            return EngineUnavailable("engine_died", f"the engine at {self.address} stopped "
                                     f"responding during {job.type} job {job.id} (it may have "
                                     "crashed or been killed; see its log)")
        hint = ("; if it is running, check that this client's key is authorised"
                if self._keys else "")
        return EngineUnavailable("no_engine", f"no engine at {self.address} answered within "
                                 f"{self.timeout:g} s — start it with: python -m engine serve "
                                 f"--address {self.address}{hint}")

    def _open_socket(self) -> zmq.Socket:
        socket = self._context.socket(zmq.DEALER)
        socket.linger = 0
        if self._keys is not None:
            socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = self._keys
        socket.connect(self.address)
        return socket


def _load_keys(folder: Path) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) from a client key folder."""
    try:
        public, secret = zmq.auth.load_certificate(folder / "client.key_secret")
        server, _ = zmq.auth.load_certificate(folder / "server.key")
    except OSError as error:
        raise FileNotFoundError(f"{folder} is not a client key folder (expected client.key_secret "
                                "and server.key, made by `python -m engine keys`)") from error
    return public, secret, server


def _image(image):
    """Request value for an image: encoded file bytes, or a uint8 pixel array."""
    if isinstance(image, (str, Path)):
        return Path(image).read_bytes()
    if isinstance(image, (bytes, bytearray, memoryview, np.ndarray)):
        return image
    raise TypeError("image must be a file path, encoded PNG/JPEG/WebP bytes, or a uint8 "
                    f"(H, W, 3|4) array; got {type(image).__name__}")


def _present(**fields) -> dict:
    return {name: value for name, value in fields.items() if value is not None}
