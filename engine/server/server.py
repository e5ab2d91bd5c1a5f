"""The engine's network front: one ROUTER socket serving any number of clients.

This thread only talks: it validates requests, answers hello/status/heartbeat/cancel at
once, queues jobs for the single worker thread, and forwards the worker's events. It
never computes, so heartbeats are answered while a job runs. A client that stops sending
heartbeats for HEARTBEAT_TIMEOUT has its jobs cancelled.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from bridge.errors import ProtocolError
from bridge.protocol import (HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, JOB_TYPES, MAX_FRAME_READ,
                             MAX_HEADER_BYTES, MAX_IMAGE_SIDE, MAX_PARTS, MAX_REQUEST_BYTES,
                             PROTOCOL_VERSION, REQUEST_TYPES, Message, decode, encode,
                             error_message, validate_request)

from . import keys, pipelines
from .jobs import Job, JobQueue
from .validation import parse_request
from .worker import Worker

log = logging.getLogger("partsmith.engine")

EVENTS_ADDRESS = "inproc://partsmith-worker-events"
POLL_MS = 250  # how often silent clients are checked for and stop() is noticed
BATCH = 100  # messages handled per socket per loop turn, so neither side starves
SHUTDOWN_GRACE = 10.0  # seconds a running pipeline gets to notice it was cancelled
FLUSH_TIMEOUT = 2.0  # seconds the last replies get to leave at shutdown


class EngineServer:
    """Binds at construction (so the caller sees address and key errors at once);
    serve() then runs until shutdown."""

    def __init__(self, address: str, keys_dir: Path | None = None):
        key_folder = keys.keys_for_bind(address, keys_dir)  # BindRefused before binding
        self._context = zmq.Context()
        self._router = self._context.socket(zmq.ROUTER)
        self._router.maxmsgsize = MAX_FRAME_READ  # larger frames: connection dropped
        self._authenticator = None
        if key_folder is not None:
            self._authenticator = keys.secure(self._context, self._router, key_folder)
        self._router.bind(address)
        self.address = self._router.last_endpoint.decode()
        self.secure = key_folder is not None
        self._events = self._context.socket(zmq.PULL)
        self._events.bind(EVENTS_ADDRESS)
        self._queue = JobQueue()
        self._worker = Worker(self._context, self._queue, EVENTS_ADDRESS)
        self._clients: dict[bytes, float] = {}  # routing identity -> last time heard
        self._stopping = False
        self._started = time.monotonic()
        self._handlers = {"hello": self._hello, "status": self._status,
                          "heartbeat": self._heartbeat, "cancel": self._cancel,
                          "shutdown": self._shutdown_request,
                          **{kind: self._submit for kind in JOB_TYPES}}

    def serve(self) -> None:
        """Serve until a `shutdown` request or stop(); then shut down gracefully."""
        self._worker.start()
        log.info("Partsmith engine ready at %s (protocol %d%s)", self.address,
                 PROTOCOL_VERSION, ", CurveZMQ" if self.secure else "")
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._events, zmq.POLLIN)
        try:
            while not self._stopping:
                ready = dict(poller.poll(POLL_MS))
                if self._events in ready:
                    self._forward_events(BATCH)
                if self._router in ready:
                    self._receive()
                self._drop_silent_clients()
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Ask serve() to return (safe from a signal handler)."""
        self._stopping = True

    # ------------------------------------------------------------------ receiving

    def _receive(self) -> None:
        for _ in range(BATCH):
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            client = frames[0].bytes
            self._clients[client] = time.monotonic()
            job = None
            try:
                message = decode(frames[1:], MAX_REQUEST_BYTES)
                job = message.job
                self._handlers.get(message.type, self._not_a_request)(client, message)
            except ProtocolError as error:
                log.warning("client %s: rejected: %s", client.hex(), error)
                self._reply(client, error_message(error.job or job, error.code, error.message))
            except Exception as error:  # a bug must cost one request, not the engine
                log.exception("client %s: request failed", client.hex())
                self._reply(client, error_message(job, "internal_error", f"the engine failed to "
                                                  f"handle the request: {error}"))

    def _not_a_request(self, client: bytes, message: Message) -> None:
        validate_request(message)  # raises the specific error

    def _hello(self, client: bytes, message: Message) -> None:
        validate_request(message)
        installed = pipelines.registered()
        self._reply(client, Message("hello", message.job, {
            "protocol": PROTOCOL_VERSION,
            "versions": {"python": platform.python_version(), "numpy": np.__version__,
                         "pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version()},
            "requests": list(REQUEST_TYPES),
            "capabilities": sorted({p.operation for p in installed}),
            "device": self._worker.device or "starting",
            "models": [{"operation": p.operation, "name": p.name, **p.details}
                       for p in installed],
            "library_size": next((p.details.get("assets", 0) for p in installed
                                  if p.name == pipelines.LIBRARY), 0),
            "limits": {"max_request_bytes": MAX_REQUEST_BYTES,
                       "max_header_bytes": MAX_HEADER_BYTES, "max_parts": MAX_PARTS,
                       "max_image_side": MAX_IMAGE_SIDE},
            "heartbeat": {"interval": HEARTBEAT_INTERVAL, "timeout": HEARTBEAT_TIMEOUT},
            "secure": self.secure,
        }))

    def _status(self, client: bytes, message: Message) -> None:
        validate_request(message)
        self._reply(client, Message("status", message.job, {
            "uptime": time.monotonic() - self._started,
            "clients": len(self._clients),
            "jobs_finished": self._worker.finished,
            "device": self._worker.device or "starting",
            "rss_bytes": _resident_bytes(),
            **self._queue.describe(client),
        }))

    def _heartbeat(self, client: bytes, message: Message) -> None:
        validate_request(message)
        self._reply(client, Message("heartbeat", None))

    def _cancel(self, client: bytes, message: Message) -> None:
        validate_request(message)
        waiting = self._queue.cancel(client, message.job, "cancelled", "cancelled on request")
        if waiting is not None:  # a running job is reported by the worker when it stops
            self._reply(client, error_message(waiting.id, "cancelled", "cancelled on request"))

    def _shutdown_request(self, client: bytes, message: Message) -> None:
        validate_request(message)
        log.info("client %s asked the engine to shut down", client.hex())
        self._reply(client, Message("accepted", message.job, {"position": 0}))
        self._stopping = True

    def _submit(self, client: bytes, message: Message) -> None:
        request = parse_request(message)
        pipeline = pipelines.lookup(request.operation, request.pipeline)
        position = self._queue.submit(Job(client, message.job, request, pipeline))
        self._reply(client, Message("accepted", message.job, {"position": position}))

    # ------------------------------------------------------------------ sending

    def _reply(self, client: bytes, message: Message) -> None:
        self._router.send_multipart([client, *encode(message)], copy=False)

    def _forward_events(self, limit: int) -> None:
        for _ in range(limit):
            try:
                frames = self._events.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._router.send_multipart(frames, copy=False)

    def _drop_silent_clients(self) -> None:
        now = time.monotonic()
        silent = [c for c, heard in self._clients.items() if now - heard > HEARTBEAT_TIMEOUT]
        if not silent:
            return
        busy = self._queue.clients()
        for client in silent:
            del self._clients[client]
            if client in busy:
                log.warning("client %s sent no heartbeat for %.0f s: cancelling its jobs",
                            client.hex(), HEARTBEAT_TIMEOUT)
                self._queue.cancel_client(client, "cancelled", "the client went away")

    def _shutdown(self) -> None:
        log.info("shutting down")
        for job in self._queue.close("shutting_down", "the engine is shutting down"):
            self._reply(job.client, error_message(job.id, job.cancel_code, job.cancel_text))
        self._worker.join(SHUTDOWN_GRACE)
        self._forward_events(limit=10_000)
        if self._worker.is_alive():
            log.warning("the running pipeline ignored cancellation for %.0f s; exiting anyway",
                        SHUTDOWN_GRACE)
        self._router.close(linger=1000)  # let the last replies leave
        self._events.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        # term() waits for those replies. Bounded, because libzmq can hang there after a
        # half-finished CURVE handshake, and the engine must exit regardless.
        terminator = threading.Thread(target=self._context.term, daemon=True)
        terminator.start()
        terminator.join(FLUSH_TIMEOUT)
        log.info("engine stopped")


def _resident_bytes() -> int | None:
    """This process's resident memory (Linux), for status replies and the benchmark."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
