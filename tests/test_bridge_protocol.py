"""Framing and schema of the bridge protocol, without an engine."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bridge.errors import ProtocolError
from bridge.protocol import (MAX_FRAMES, PROTOCOL_VERSION, Message, Result, decode, decode_result, encode,
                             encode_result, validate_request)
from bridge_harness import REPO, big_parts, png_bytes
from bridge_harness import watchdog  # noqa: F401 (autouse: bounds every test)
from engine.render.image_prep import decode_image


def test_arrays_and_bytes_round_trip_exactly():
    arrays = {
        "u8": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        "i32": np.array([[-1, 2, 2**31 - 1]], dtype=np.int32),
        "f32": np.array([[np.pi, -0.0, 1e-38]], dtype=np.float32),
        "f64": np.arange(16, dtype=np.float64).reshape(4, 4)[:, ::2],  # non-contiguous
        "big_endian": np.array([1.5, 2.5], dtype=">f4"),
        "blob": b"\x00\x01binary",
    }
    message = decode(encode(Message("result", "job-1", {"x": 1}, arrays)))
    assert (message.type, message.job, message.body) == ("result", "job-1", {"x": 1})
    for name, value in arrays.items():
        if isinstance(value, bytes):
            assert message.arrays[name] == value
        else:
            np.testing.assert_array_equal(message.arrays[name], value)
            assert message.arrays[name].dtype == value.dtype.newbyteorder("<")


def test_header_describes_frames():
    frames = encode(Message("generate", "j", {}, {"image": b"abc", "v": np.zeros((5, 3), np.float32)}))
    header = json.loads(frames[0])
    assert header["protocol"] == 2
    assert header["arrays"] == [
        {"name": "image", "dtype": "bytes", "shape": [3], "nbytes": 3, "frame": 1},
        {"name": "v", "dtype": "float32", "shape": [5, 3], "nbytes": 60, "frame": 2},
    ]


def test_decoded_arrays_do_not_copy_the_frame():
    frame = np.arange(300, dtype=np.float32).tobytes()
    header = {"protocol": PROTOCOL_VERSION, "type": "result", "job": "j", "body": {},
              "arrays": [{"name": "a", "dtype": "float32", "shape": [100, 3], "nbytes": 1200,
                          "frame": 1}]}
    array = decode([json.dumps(header).encode(), frame]).arrays["a"]
    assert np.shares_memory(array, np.frombuffer(frame, np.uint8))


def test_unsendable_dtype_is_refused():
    with pytest.raises(TypeError, match="int64"):
        encode(Message("result", "j", {}, {"faces": np.zeros((2, 3), np.int64)}))


def test_size_limits():
    with pytest.raises(ProtocolError) as error:
        decode([b"{}", b"x" * 100], max_bytes=50)
    assert error.value.code == "message_too_large"
    with pytest.raises(ProtocolError) as error:
        decode([b"{}"] * (MAX_FRAMES + 1))
    assert error.value.code == "too_many_frames"


def test_defaults_are_filled_in():
    body = validate_request(Message("generate", "j", {"parts": 4}, {"image": b"png"}))
    assert body == {"pipeline": "partrag", "parts": 4, "steps": None, "guidance": None,
                    "seed": 0, "top_k": None}
    body = validate_request(Message("library.search", "j", {}, {"image": b"png"}))
    assert body == {"k": 8, "level": "object", "category": None}


def test_result_round_trip_keeps_parts_and_extras():
    parts = big_parts(3, 10)
    message = decode(encode(encode_result("j", Result(parts, {"note": "hi"}, {"thumbnail": b"t"}))))
    result = decode_result(message)
    assert result.metadata == {"note": "hi"} and result.arrays == {"thumbnail": b"t"}
    for sent, got in zip(parts, result.parts):
        assert (got.label, got.index, got.mesh_id) == (sent.label, sent.index, sent.mesh_id)
        for key in ("vertices", "faces", "transform"):
            np.testing.assert_array_equal(getattr(got, key), getattr(sent, key))


def test_invalid_pipeline_output_is_caught_before_sending():
    part = big_parts(1, 10)[0]
    part.faces = part.faces + 100  # indices past the last vertex
    with pytest.raises(ProtocolError) as error:
        encode_result("j", Result([part]))
    assert error.value.code == "invalid_part"


def test_images_decode_to_rgba():
    rgba = decode_image(png_bytes(16, 12, (10, 20, 30)))
    assert rgba.shape == (12, 16, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0].tolist() == [10, 20, 30, 255]
    rgb = np.zeros((5, 7, 3), np.uint8)
    assert decode_image(rgb).shape == (5, 7, 4)


def test_bridge_imports_only_pyzmq_numpy_and_the_standard_library():
    code = "import sys, bridge; print(sorted({name.split('.')[0] for name in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    for forbidden in ("engine", "PIL", "torch", "bpy"):
        assert f"'{forbidden}'" not in loaded
