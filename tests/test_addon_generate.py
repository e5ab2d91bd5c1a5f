"""The add-on against a real engine subprocess (tests-only pipelines): API, operator,
timer-driven polling, undo, cancel and every error path leaving the scene unchanged."""

import os
import sys
import threading
import time

import bpy
import numpy as np
import pytest
import zmq
from mathutils import Matrix

from addon_harness import REPO, EngineProcess, addon, empty_scene, png_bytes, prefs, scene_snapshot  # noqa: F401
from bridge.client import EngineClient
from bridge.protocol import Message, decode, encode
from bridge_harness import watchdog  # noqa: F401


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    process = EngineProcess(tmp_path_factory.mktemp("engine"))
    yield process
    process.stop()


@pytest.fixture
def linked(addon, prefs, engine):
    """The add-on pointed at the module's engine."""
    prefs.address, prefs.timeout = engine.address, 10.0
    return addon


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "chair.png"
    path.write_bytes(png_bytes(32, 24))
    return path


def test_api_generate_builds_what_the_engine_sent(linked, empty_scene, engine, image):
    lines = []
    root = linked.api.generate(str(image), parts=5, seed=4, model="test", report=lines.append)
    with EngineClient(engine.address) as client:
        expected = client.generate(image, parts=5, seed=4, pipeline="test").parts
    children = linked.scene.asset_parts(root)
    bpy.context.view_layer.update()
    assert root.name == "chair_asset" and len(children) == 5
    for part, child in zip(expected, children):
        assert child["partsmith_label"] == part.label
        assert (len(child.data.vertices), len(child.data.polygons)) == (
            len(part.vertices), len(part.faces))
        assert np.allclose(child.matrix_world, root.matrix_world @ Matrix(part.transform.tolist()))
    assert children[0].data == children[2].data  # the test pipeline's mesh_id is index % 2
    assert lines[-1].startswith("Partsmith: chair_asset with 5 parts")


def test_one_undo_step_removes_the_whole_asset(linked, empty_scene, image):
    bpy.ops.ed.undo_push(message="before")
    before = scene_snapshot()
    linked.api.generate(str(image), parts=3, model="test", report=None)
    assert len(bpy.data.objects) == 4
    bpy.ops.ed.undo()
    assert scene_snapshot() == before
    bpy.ops.ed.redo()
    assert len(bpy.data.objects) == 4


def test_operator_generates_from_the_panel_settings(linked, empty_scene, image):
    settings = bpy.context.scene.partsmith
    settings.image = bpy.data.images.load(str(image))
    linked.engine_link.hello()  # the model list comes from the engine
    settings.model, settings.parts, settings.seed = "test", 2, 9
    assert bpy.ops.partsmith.generate() == {"FINISHED"}
    root = linked.api.Current.task.root
    assert root.name == "chair_asset" and len(root.children) == 2
    assert '"seed": 9' in root["partsmith_parameters"]
    assert '"top_k": null' in root["partsmith_parameters"]  # the model's default
    settings.top_k = 0  # and 0 turns retrieval off rather than meaning "default"
    assert bpy.ops.partsmith.generate() == {"FINISHED"}
    assert '"top_k": 0' in linked.api.Current.task.root["partsmith_parameters"]


def test_timer_path_polls_without_blocking(linked, empty_scene, image):
    generation = linked.api.start(str(image), parts=2, steps=20, model="test-slow")
    fractions = []
    started = time.perf_counter()
    while not generation.step():  # what the UI's timer does
        fractions.append(generation.fraction)
        assert time.perf_counter() - started < 30
        time.sleep(0.05)
    assert generation.state == "done" and len(generation.root.children) == 1
    assert 0 < max(fractions) < 1 and fractions == sorted(fractions)


def test_cancel_leaves_the_scene_unchanged(linked, empty_scene, image):
    before = scene_snapshot()
    generation = linked.api.start(str(image), model="test-slow", steps=200)
    while generation.fraction == 0:
        generation.step()
        time.sleep(0.02)
    bpy.ops.partsmith.cancel()
    while not generation.step():
        time.sleep(0.02)
    assert generation.state == "cancelled" and scene_snapshot() == before


def expect_failure(addon, code, image, match, **options):
    """Both entry points fail with a specific message and leave the scene unchanged."""
    before = scene_snapshot()
    with pytest.raises(addon.api.PartsmithError, match=match) as raised:
        addon.api.generate(image, report=None, **options)
    assert raised.value.code == code and addon.api.Current.error == raised.value.message
    assert scene_snapshot() == before
    return raised.value


def test_bad_images_are_reported(linked, empty_scene, image, tmp_path):
    expect_failure(linked, "invalid_image", b"not an image", "image cannot be used", model="test")
    expect_failure(linked, "invalid_image", str(tmp_path / "missing.png"), "not found",
                   model="test")


def test_missing_model_is_reported(linked, empty_scene, image):
    expect_failure(linked, "model_unavailable", str(image), "no model for this.*partrag")


def test_operator_reports_errors(linked, empty_scene, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    settings = bpy.context.scene.partsmith
    settings.image = bpy.data.images.load(str(broken))
    settings.model = "test"
    before = scene_snapshot()
    with pytest.raises(RuntimeError, match="Error: The reference image cannot be used"):
        bpy.ops.partsmith.generate()
    assert "image cannot be used" in linked.api.Current.error  # what the panel shows
    assert scene_snapshot() == before


def test_unreachable_engine_is_reported(addon, prefs, empty_scene, image):
    context = zmq.Context.instance()
    probe = context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)  # a free port nobody listens on
    prefs.address, prefs.timeout = f"tcp://127.0.0.1:{port}", 1.0
    error = expect_failure(addon, "no_engine", str(image), "No engine answered", model="test")
    assert f"`python -m engine serve --address tcp://127.0.0.1:{port}`" in error.message


def test_bad_requests_fail_at_once_even_without_an_engine(addon, prefs, empty_scene, image):
    """Requests are checked against the protocol's schema before they are sent."""
    prefs.address, prefs.timeout = "tcp://127.0.0.1:9", 10.0  # nobody listens there
    started = time.monotonic()
    error = expect_failure(addon, "invalid_field", str(image), "steps", model="test", steps=5000)
    assert "1 to 1000" in error.message or "1000" in error.message
    assert time.monotonic() - started < 1.0


def test_parts_zero_means_the_model_decides(linked, empty_scene, image):
    """The API's parts=0 means what the panel's 0 means: the model chooses."""
    root = linked.api.generate(str(image), parts=0, model="test", report=None)
    assert len(linked.scene.asset_parts(root)) == 2  # the test pipeline's own default


def test_engine_dying_mid_job_is_reported(addon, prefs, empty_scene, image, tmp_path):
    doomed = EngineProcess(tmp_path)
    prefs.address = doomed.address
    try:
        generation = addon.api.start(str(image), model="test-slow", steps=1000)
        while generation.fraction == 0:
            generation.step()
            time.sleep(0.02)
        before = scene_snapshot()
        doomed.kill()
        while not generation.step():
            time.sleep(0.05)
    finally:
        doomed.stop()
    assert generation.code == "engine_died" and "stopped responding" in generation.error
    assert scene_snapshot() == before


def test_protocol_mismatch_is_reported(addon, prefs, empty_scene, image):
    """An engine of another release refuses every request with unsupported_protocol."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def refuse():
        while not stop.is_set():
            if router.poll(50):
                identity, *frames = router.recv_multipart()
                request = decode(frames)
                if request.type != "heartbeat":
                    reply = Message("error", request.job, {"code": "unsupported_protocol",
                                                           "message": "protocol 2 only"})
                    router.send_multipart([identity, *encode(reply)])

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    prefs.address = f"tcp://127.0.0.1:{port}"
    try:
        expect_failure(addon, "unsupported_protocol", str(image), "different protocol version",
                       model="test")
    finally:
        stop.set()
        thread.join()
        router.close(linger=0)


def test_auto_started_engine_serves_and_stops(addon, prefs, empty_scene, image, monkeypatch):
    context = zmq.Context.instance()
    probe = context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    prefs.address, prefs.timeout, prefs.auto_start = f"tcp://127.0.0.1:{port}", 60.0, True
    prefs.project, prefs.python = str(REPO), sys.executable
    prefs.engine_args = "--pipeline-module bridge_test_pipeline"
    try:
        root = addon.api.generate(str(image), parts=2, model="test", report=None)
        assert len(root.children) == 2 and addon.engine_link.engine_running()
        info = addon.engine_link.hello()
        assert "test" in addon.engine_link.generate_models() and info["device"]
    finally:
        process = addon.engine_link.State.process
        addon.engine_link.stop_engine()
    assert process.poll() == 0 and not addon.engine_link.engine_running()
