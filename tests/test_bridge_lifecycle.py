"""Deaths and restarts: no engine, engine killed, client killed, shutdown, reconnect."""

import select
import socket
import subprocess
import sys
import time

import pytest

from bridge import EngineClient, EngineUnavailable, JobCancelled
from bridge_harness import REPO, EngineProcess, png_bytes
from bridge_harness import watchdog  # noqa: F401 (autouse: bounds every test)

CLIENT_SCRIPT = """
import sys, time
import numpy as np
from bridge import EngineClient
client = EngineClient(sys.argv[1])
job = client.submit_generate(np.zeros((8, 8, 3), np.uint8), pipeline="test-slow", steps=1000)
while job.poll().state != "running":
    time.sleep(0.01)
print("running", flush=True)
time.sleep(600)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_running(job, timeout=15.0):
    deadline = time.monotonic() + timeout
    while job.poll().state != "running":
        assert time.monotonic() < deadline, job.poll()
        time.sleep(0.01)


def test_no_engine_is_reported_with_a_hint(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    with EngineClient(address, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as error:
            client.hello()
        assert time.monotonic() - started < 5
    assert error.value.code == "no_engine"
    assert f"no engine at {address}" in str(error.value)
    assert f"python -m engine serve --address {address}" in str(error.value)


def test_killed_engine_is_noticed_within_5_s_and_a_restarted_one_is_used(tmp_path):
    engine = EngineProcess(tmp_path)
    address = engine.address
    with EngineClient(address) as client:
        job = client.submit_generate(png_bytes(), pipeline="test-slow", steps=1000)
        wait_running(job)
        engine.kill()
        killed = time.monotonic()
        with pytest.raises(EngineUnavailable) as error:
            job.result(timeout=30)
        assert time.monotonic() - killed < 5.0
        assert error.value.code == "engine_died" and address in str(error.value)
        assert job.poll().state == "failed"

        restarted = EngineProcess(tmp_path, address=address)
        try:
            assert client.generate(png_bytes(), pipeline="test").parts
        finally:
            restarted.stop()


def test_vanished_client_has_its_job_cancelled_and_others_are_served(tmp_path):
    engine = EngineProcess(tmp_path)
    try:
        doomed = subprocess.Popen(
            [sys.executable, "-c", CLIENT_SCRIPT, engine.address],
            cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            assert select.select([doomed.stdout], [], [], 60)[0], "client never got running"
            assert doomed.stdout.readline().strip() == "running"
        finally:
            doomed.kill()
            doomed.wait(timeout=10)
        vanished = time.monotonic()
        with EngineClient(engine.address) as client:
            # Only runs once the worker is free: the 100 s job must have been cancelled.
            assert client.generate(png_bytes(), pipeline="test").parts
            assert time.monotonic() - vanished < 10.0
            assert client.status()["jobs_finished"] == 2
        assert "cancelling its jobs" in engine.log()
    finally:
        engine.stop()


def test_shutdown_ends_running_and_queued_jobs_and_exits(tmp_path):
    engine = EngineProcess(tmp_path)
    try:
        with EngineClient(engine.address) as client:
            running = client.submit_generate(png_bytes(), pipeline="test-slow", steps=1000)
            queued = client.submit_generate(png_bytes(), pipeline="test-slow", steps=1000)
            wait_running(running)
            client.shutdown()
            for job in (running, queued):
                with pytest.raises(JobCancelled) as error:
                    job.result(timeout=10)
                assert error.value.code == "shutting_down"
        assert engine.process.wait(timeout=15) == 0
        assert "engine stopped" in engine.log()
    finally:
        engine.stop()


def test_sigterm_stops_the_engine_gracefully(tmp_path):
    engine = EngineProcess(tmp_path)
    engine.process.terminate()
    assert engine.process.wait(timeout=15) == 0
    assert "engine stopped" in engine.log()


def test_engine_of_another_protocol_version_fails_jobs_at_once():
    """Replies in a protocol version the client cannot read end the job with a clear error."""
    import json
    import threading

    import numpy as np
    import zmq

    router = zmq.Context.instance().socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def answer_in_version_3():
        while not stop.is_set():
            if router.poll(50):
                identity, header, *_ = router.recv_multipart()
                job = json.loads(header)["job"]
                reply = {"protocol": 3, "type": "accepted", "job": job, "body": {}, "arrays": []}
                router.send_multipart([identity, json.dumps(reply).encode()])

    thread = threading.Thread(target=answer_in_version_3, daemon=True)
    thread.start()
    try:
        with EngineClient(f"tcp://127.0.0.1:{port}", timeout=30) as client:
            started = time.monotonic()
            job = client.submit_generate(np.zeros((8, 8, 3), np.uint8))
            with pytest.raises(Exception) as failure:
                job.result(timeout=10)
            assert getattr(failure.value, "code", None) == "unsupported_protocol"
            assert "protocol version 3" in str(failure.value)
            assert time.monotonic() - started < 5
    finally:
        stop.set()
        thread.join()
        router.close(linger=0)
