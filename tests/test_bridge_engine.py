"""The engine server against real clients: jobs, progress, cancellation, bad input, load."""

import json
import struct
import threading
import time
import zlib

import numpy as np
import pytest

from bridge import EngineClient, EngineError, JobCancelled
from bridge.protocol import PROTOCOL_VERSION, Message, encode, encode_parts
from bridge_harness import EngineProcess, RawClient, big_parts, png_bytes
from bridge_harness import watchdog  # noqa: F401 (autouse: bounds every test)
from bridge_test_pipeline import THUMBNAIL, make_part


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    process = EngineProcess(tmp_path_factory.mktemp("engine"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(engine):
    with EngineClient(engine.address) as client:
        yield client


def wait_for(job, state, timeout=15.0):
    deadline = time.monotonic() + timeout
    while job.poll().state != state:
        assert time.monotonic() < deadline, f"job never reached {state!r}: {job.poll()}"
        time.sleep(0.01)


def assert_parts_equal(got, sent):
    assert len(got) == len(sent)
    for a, b in zip(got, sent):
        assert (a.label, a.index, a.mesh_id) == (b.label, b.index, b.mesh_id)
        for key, dtype in (("vertices", np.float32), ("faces", np.int32), ("transform", np.float64)):
            assert getattr(a, key).dtype == dtype
            assert np.array_equal(getattr(a, key), getattr(b, key))


# ---------------------------------------------------------------------------- serving


def test_hello_describes_the_engine(client):
    hello = client.hello()
    assert hello["protocol"] == PROTOCOL_VERSION == 2
    assert hello["device"] in ("cpu", "starting") or hello["device"].startswith("cuda")
    assert {"operation": "generate", "name": "test", "kind": "test"} in hello["models"]
    assert hello["library_size"] == 3
    assert "generate" in hello["capabilities"] and "cancel" in hello["requests"]
    assert hello["heartbeat"]["timeout"] > hello["heartbeat"]["interval"] > 0


@pytest.mark.parametrize("kind", ["png", "path", "array"])
def test_generate_returns_the_pipeline_parts(client, tmp_path, kind):
    png = png_bytes(16, 12, (10, 20, 30))
    image = {"png": png, "array": np.full((12, 16, 3), (10, 20, 30), np.uint8),
             "path": tmp_path / "image.png"}[kind]
    (tmp_path / "image.png").write_bytes(png)
    result = client.generate(image, pipeline="test", parts=3, seed=42)
    assert_parts_equal(result.parts, [make_part(42, i) for i in range(3)])
    assert result.metadata == {"seed": 42, "image_shape": [12, 16, 4],
                               "image_corner": [10, 20, 30, 255]}


def test_round_trip_of_8_parts_of_100k_vertices_is_exact(client):
    parts = big_parts(8, 100_000, seed=7)
    result = client.edit(parts, [0, 3], pipeline="test-echo")
    assert result.metadata == {"targets": [0, 3]}
    assert_parts_equal(result.parts, parts)


def test_library_requests(client):
    hits = client.library_search(png_bytes(), k=4, level="part").metadata
    assert [h["asset_id"] for h in hits["hits"]] == ["asset0", "asset1", "asset2", "asset3"]
    assert hits["level"] == "part"
    asset = client.library_asset("chair_01")
    assert asset.arrays == {"thumbnail": THUMBNAIL} and asset.metadata == {"asset_id": "chair_01"}
    assert_parts_equal(asset.parts, [make_part(1, 0)])


def test_real_pipelines_without_bundles_answer_a_clear_error(client):
    with pytest.raises(EngineError) as error:
        client.generate(png_bytes(), parts=6)
    assert error.value.code == "model_unavailable"
    assert "no model bundle for 'partrag' installed" in error.value.message


def test_pipeline_failures_are_reported_and_the_engine_goes_on(client):
    with pytest.raises(EngineError) as error:
        client.generate(png_bytes(), pipeline="test-fail")
    assert error.value.code == "pipeline_failed" and "boom in the test pipeline" in str(error.value)
    with pytest.raises(EngineError) as error:
        client.generate(png_bytes(), pipeline="test-bad-result")
    assert error.value.code == "pipeline_failed" and "float32" in str(error.value)
    assert client.generate(png_bytes(), pipeline="test").parts


def test_progress_streams_while_a_job_outlives_the_heartbeat_timeout(client):
    job = client.submit_generate(png_bytes(), pipeline="test-slow", steps=35)  # 3.5 s
    seen = []
    while not job.done:
        status = job.poll()
        if status.state == "running":
            seen.append(status.fraction)
        time.sleep(0.02)
    assert job.result().metadata == {"steps": 35}
    assert job.poll().state == "done"
    assert seen == sorted(seen) and len(set(seen)) > 10 and 0 < seen[-1] < 1


def test_cancel_a_running_job(client):
    job = client.submit_generate(png_bytes(), pipeline="test-slow", steps=1000)
    wait_for(job, "running")
    assert client.status()["jobs"][job.id]["state"] == "running"
    started = time.monotonic()
    job.cancel()
    with pytest.raises(JobCancelled):
        job.result(timeout=10)
    assert time.monotonic() - started < 3.0
    assert job.poll().state == "cancelled"
    assert client.generate(png_bytes(), pipeline="test").parts


def test_cancel_a_queued_job(client):
    running = client.submit_generate(png_bytes(), pipeline="test-slow", steps=1000)
    queued = client.submit_generate(png_bytes(), pipeline="test-slow", steps=1000)
    wait_for(queued, "queued")
    assert queued.poll().position == 1
    queued.cancel()
    with pytest.raises(JobCancelled):
        queued.result(timeout=5)
    assert running.poll().state == "running"
    running.cancel()
    with pytest.raises(JobCancelled):
        running.result(timeout=10)


def test_a_full_queue_refuses_more_jobs(client):
    image = png_bytes()
    jobs = [client.submit_generate(image, pipeline="test-slow", steps=1000)]
    wait_for(jobs[0], "running")
    jobs += [client.submit_generate(image, pipeline="test-slow", steps=1000) for _ in range(64)]
    wait_for(jobs[-1], "queued")
    with pytest.raises(EngineError) as error:
        client.generate(image, pipeline="test")
    assert error.value.code == "queue_full"
    for job in reversed(jobs):
        job.cancel()
    for job in jobs:
        with pytest.raises(JobCancelled):
            job.result(timeout=10)


def test_closing_a_client_cancels_its_jobs(engine, client):
    leaving = EngineClient(engine.address)
    job = leaving.submit_generate(png_bytes(), pipeline="test-slow", steps=1000)
    wait_for(job, "running")
    leaving.close()
    assert job.poll().state == "failed"
    started = time.monotonic()
    assert client.generate(png_bytes(), pipeline="test").parts  # the worker is free again
    assert time.monotonic() - started < 2.0  # well before the heartbeat timeout


def test_four_concurrent_clients_get_their_own_results(engine):
    errors = []

    def work(number):
        try:
            with EngineClient(engine.address) as own:
                jobs = [(seed, own.submit_generate(png_bytes(), pipeline="test", parts=2, seed=seed))
                        for seed in range(number * 100, number * 100 + 5)]
                for seed, job in jobs:
                    assert_parts_equal(job.result(timeout=60).parts,
                                       [make_part(seed, 0), make_part(seed, 1)])
                assert_parts_equal(own.edit(big_parts(2, 20_000, number), [0], pipeline="test-echo").parts,
                                   big_parts(2, 20_000, number))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)


def test_1000_sequential_requests_keep_memory_flat(client):
    image = png_bytes()
    for _ in range(100):  # warm up allocator pools and caches
        client.generate(image, pipeline="test", parts=1, steps=1)
    before = client.status()["rss_bytes"]
    for seed in range(1000):
        assert len(client.generate(image, pipeline="test", parts=1, steps=1, seed=seed).parts) == 1
    growth = client.status()["rss_bytes"] - before
    assert growth < 50 * 2**20, f"engine RSS grew by {growth / 2**20:.1f} MB"


def test_duplicate_job_ids_are_refused(engine):
    raw = RawClient(engine.address)
    try:
        job = Message("generate", "dup", {"pipeline": "test-slow", "steps": 1000},
                      {"image": png_bytes()})
        assert raw.request(job, until=("accepted",)).type == "accepted"
        reply = raw.request(job, until=("error",))
        assert reply.body["code"] == "duplicate_job"
        reply = raw.request(Message("cancel", "dup"), until=("error",))
        assert reply.body["code"] == "cancelled"
    finally:
        raw.close()


# ---------------------------------------------------------------------------- bad input


def valid_generate(job="bad-1", **body):
    return Message("generate", job, {"pipeline": "test", **body}, {"image": png_bytes()})


def valid_edit(**body):
    metas, arrays = encode_parts(big_parts(2, 10))
    return Message("edit", "bad-1", {"pipeline": "test-echo", "parts": metas,
                                     "targets": [0], **body}, arrays)


def with_header(change, message=None):
    """Frames of `message` (a valid generate) after `change(header)` edits its JSON."""
    frames = encode(message or valid_generate())
    header = json.loads(frames[0])
    change(header)
    return [json.dumps(header).encode(), *frames[1:]]


def with_arrays(**arrays):
    message = valid_generate()
    message.arrays = arrays
    return encode(message)


def edit_with(name, value):
    message = valid_edit()
    message.arrays[name] = value
    return encode(message)


def huge_png():
    """A PNG whose header claims 20000 x 20000 pixels (the pixel data is tiny)."""
    data = bytearray(png_bytes(1, 1))
    struct.pack_into(">II", data, 16, 20000, 20000)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def truncated_png():
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()[:2000]


def setitem(key, value):
    return lambda header: header.__setitem__(key, value)


def set_body(**fields):
    return lambda header: header["body"].update(fields)


def set_descriptor(**fields):
    return lambda header: header["arrays"][0].update(fields)


BAD_INPUTS = {
    # header syntax and size
    "malformed_json": (lambda: [b'{"protocol": 1, "type": '], "malformed_header"),
    "not_utf8": (lambda: [b"\xff\xfe\xfa"], "malformed_header"),
    "header_is_a_list": (lambda: [b"[1, 2, 3]"], "malformed_header"),
    "empty_header": (lambda: [b""], "malformed_header"),
    "deeply_nested_json": (lambda: [b"[" * 100_000], "malformed_header"),
    "giant_header": (lambda: with_header(set_body(client="x" * 300_000)), "header_too_large"),
    "too_many_frames": (lambda: [encode(valid_generate())[0]] + [b"x"] * 300, "too_many_frames"),
    # header fields
    "missing_type": (lambda: with_header(lambda h: h.pop("type")), "missing_field"),
    "extra_header_field": (lambda: with_header(setitem("priority", 9)), "unexpected_field"),
    "wrong_protocol_version": (lambda: with_header(setitem("protocol", 1)), "unsupported_protocol"),
    "protocol_as_string": (lambda: with_header(setitem("protocol", "1")), "invalid_field"),
    "unknown_type": (lambda: with_header(setitem("type", "explode")), "unknown_type"),
    "reply_type_as_request": (lambda: with_header(setitem("type", "result")), "unknown_type"),
    "null_job_id": (lambda: with_header(setitem("job", None)), "invalid_job_id"),
    "bad_job_id": (lambda: with_header(setitem("job", "../" * 30)), "invalid_job_id"),
    "body_not_object": (lambda: with_header(setitem("body", [1])), "invalid_field"),
    "arrays_not_list": (lambda: with_header(setitem("arrays", {})), "invalid_field"),
    # array descriptors and frames
    "missing_frame": (lambda: with_header(lambda h: None)[:1], "frame_mismatch"),
    "extra_frame": (lambda: with_header(lambda h: None) + [b"extra"], "frame_mismatch"),
    "frame_index_out_of_range": (lambda: with_header(set_descriptor(frame=5)), "frame_mismatch"),
    "byte_count_lie": (lambda: with_header(set_descriptor(nbytes=10, shape=[10])), "byte_count_mismatch"),
    "shape_disagrees_with_nbytes": (lambda: with_header(set_descriptor(dtype="float32")), "byte_count_mismatch"),
    "unsupported_dtype": (lambda: with_header(set_descriptor(dtype="complex128")), "invalid_array"),
    "negative_shape": (lambda: with_header(set_descriptor(shape=[-3])), "invalid_array"),
    "descriptor_missing_key": (lambda: with_header(lambda h: h["arrays"][0].pop("nbytes")), "invalid_array"),
    "missing_image": (lambda: with_arrays(), "missing_array"),
    "unexpected_array": (lambda: with_arrays(image=png_bytes(), mask=b"1"), "unexpected_array"),
    # images
    "undecodable_image": (lambda: with_arrays(image=b"definitely not an image"), "invalid_image"),
    "truncated_image": (lambda: with_arrays(image=truncated_png()), "invalid_image"),
    "image_20000_squared": (lambda: with_arrays(image=huge_png()), "image_too_large"),
    "float_pixel_array": (lambda: with_arrays(image=np.zeros((8, 8, 3), np.float32)), "array_mismatch"),
    # parameters
    "zero_parts": (lambda: encode(valid_generate(parts=0)), "invalid_field"),
    "million_parts": (lambda: encode(valid_generate(parts=10**6)), "invalid_field"),
    "parts_as_string": (lambda: encode(valid_generate(parts="6")), "invalid_field"),
    "parts_as_bool": (lambda: encode(valid_generate(parts=True)), "invalid_field"),
    "nan_guidance": (lambda: encode(valid_generate(guidance=float("nan"))), "invalid_field"),
    "infinite_guidance": (lambda: encode(valid_generate(guidance=float("inf"))), "invalid_field"),
    "negative_steps": (lambda: encode(valid_generate(steps=-5)), "invalid_field"),
    "negative_seed": (lambda: encode(valid_generate(seed=-1)), "invalid_field"),
    "top_k_too_large": (lambda: encode(valid_generate(top_k=1000)), "invalid_field"),
    "unknown_body_field": (lambda: encode(valid_generate(partz=6)), "unexpected_field"),
    "unknown_pipeline": (lambda: encode(valid_generate(pipeline="nope")), "unknown_pipeline"),
    "uninstalled_pipeline": (lambda: encode(valid_generate(pipeline="unipart")), "model_unavailable"),
    "cancel_unknown_job": (lambda: encode(Message("cancel", "no-such-job")), "unknown_job"),
    "status_with_body": (lambda: encode(Message("status", "s", {"verbose": True})), "unexpected_field"),
    # edits
    "float64_vertices": (lambda: edit_with("parts/0/vertices", np.zeros((10, 3))), "array_mismatch"),
    "faces_wrong_shape": (lambda: edit_with("parts/1/faces", np.zeros((4, 4), np.int32)), "array_mismatch"),
    "face_index_out_of_range": (lambda: edit_with("parts/0/faces", np.full((2, 3), 99, np.int32)), "invalid_part"),
    "nan_vertex": (lambda: edit_with("parts/0/vertices", np.full((10, 3), np.nan, np.float32)), "invalid_part"),
    "missing_part_array": (lambda: with_header(lambda h: h["body"]["parts"].append(
        {"index": 7, "label": "x", "mesh_id": None}), valid_edit()), "missing_array"),
    "target_unknown_part": (lambda: encode(valid_edit(targets=[5])), "invalid_part"),
    "latent_wrong_dtype": (lambda: edit_with("parts/0/latent", np.zeros((4, 2))), "array_mismatch"),
    "unknown_operation": (lambda: encode(valid_edit(operation="melt")), "invalid_field"),
    # library
    "search_k_zero": (lambda: encode(Message("library.search", "bad-1", {"k": 0}, {"image": png_bytes()})), "invalid_field"),
    "search_bad_level": (lambda: encode(Message("library.search", "bad-1", {"level": "galaxy"}, {"image": png_bytes()})), "invalid_field"),
    "asset_without_id": (lambda: encode(Message("library.asset", "bad-1", {})), "missing_field"),
}


@pytest.fixture(scope="module")
def raw(engine):
    raw = RawClient(engine.address)
    yield raw
    raw.close()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_a_specific_error_and_the_engine_goes_on(raw, case):
    make_frames, code = BAD_INPUTS[case]
    raw.send(make_frames())
    reply = raw.receive()
    assert reply.type == "error", reply
    assert reply.body["code"] == code, reply.body
    assert len(reply.body["message"]) > 10
    good = raw.request(valid_generate(job=f"good-{case}"))
    assert good.type == "result" and len(good.body["parts"]) == 2


def test_a_request_over_the_size_limit_is_answered_not_dropped(raw, client):
    """A frame just over MAX_REQUEST_BYTES reaches the engine and is answered with
    message_too_large; the same connection goes on working. The reference client refuses
    such a request before sending it."""
    from bridge.protocol import MAX_REQUEST_BYTES

    big = np.zeros(MAX_REQUEST_BYTES + 1024, np.uint8)
    frames = encode(Message("generate", "too-big", {"parts": 2}, {"image": big}))
    raw.send(frames)
    reply = raw.receive(timeout=60.0)
    assert reply.type == "error" and reply.body["code"] == "message_too_large", reply.body
    assert raw.request(valid_generate(job="after-too-big")).type == "result"
    with pytest.raises(EngineError) as error:
        client.submit("generate", {"parts": 2}, {"image": big})
    assert error.value.code == "message_too_large" and "at most" in error.value.message
    assert client.status() is not None
