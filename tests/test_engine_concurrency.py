"""Four clients on one engine under real load (issue 18): two submit real generation jobs,
one is killed (SIGKILL) with its job running, one cancels jobs as fast as it submits them.
Every job ends as a result, `cancelled` or a coded error; the engine serves on and its memory
stays within the soak bound."""

import signal
import subprocess
import sys
import threading
import time

from bridge import EngineClient, EngineError, JobCancelled
from bridge_harness import EngineProcess
from engine.demo import DEMO_IMAGE
from engine.pipelines.registry import DEFAULT_MODELS

IMAGE = DEMO_IMAGE.read_bytes()
KILLED_CLIENT = """
import sys
from bridge import EngineClient
with EngineClient(sys.argv[1]) as client:
    image = open(sys.argv[2], "rb").read()
    jobs = [client.submit_generate(image, parts=8, seed=seed) for seed in (98, 99)]
    print("submitted", flush=True)
    jobs[-1].result(timeout=600)
"""


def outcome(job) -> str:
    try:
        job.result(timeout=600)
        return "result"
    except JobCancelled:
        return "cancelled"
    except EngineError as error:
        return error.code


def test_four_clients_with_a_killed_one_and_a_canceller(tmp_path):
    engine = EngineProcess(tmp_path, "--models", str(DEFAULT_MODELS))
    outcomes: dict[str, list[str]] = {}
    try:
        with EngineClient(engine.address) as probe:
            probe.generate(IMAGE, parts=2, steps=1)  # loads the bundle: the baseline is warm
            before = probe.status()["rss_bytes"]

        def steady(name: str, seeds: range) -> None:
            with EngineClient(engine.address) as client:
                jobs = [client.submit_generate(IMAGE, parts=2 + s % 3, steps=2, seed=s) for s in seeds]
                outcomes[name] = [outcome(job) for job in jobs]

        def canceller() -> None:
            with EngineClient(engine.address) as client:
                jobs = []
                for seed in range(12):
                    job = client.submit_generate(IMAGE, parts=2, steps=2, seed=seed)
                    job.cancel()
                    jobs.append(job)
                outcomes["canceller"] = [outcome(job) for job in jobs]

        killed = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, engine.address,
                                   str(DEMO_IMAGE)], stdout=subprocess.PIPE, text=True)
        assert killed.stdout.readline().strip() == "submitted"
        threads = [threading.Thread(target=steady, args=("a", range(0, 3))),
                   threading.Thread(target=steady, args=("b", range(3, 6))),
                   threading.Thread(target=canceller)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=900)
        assert outcomes["a"] == outcomes["b"] == ["result"] * 3
        assert set(outcomes["canceller"]) <= {"cancelled", "result"}
        assert outcomes["canceller"].count("cancelled") >= 6  # most never started
        with EngineClient(engine.address) as after:
            assert len(after.generate(IMAGE, parts=2, steps=1).parts) == 2
            growth = after.status()["rss_bytes"] - before
        assert growth < 100e6, growth
    finally:
        engine.stop()
    assert "sent no heartbeat for 3 s: cancelling its jobs" in engine.log()
