"""Partsmith wire protocol: message schema, framing and validation (see PROTOCOL.md).

Shared by the engine and its clients, so it imports only numpy and the standard library
(it must run inside Blender). A message is a list of ZeroMQ frames: frame 0 is a small
JSON header; every array or byte string travels in its own raw frame, described in the
header by name, dtype, shape, byte count and frame index. Arrays are sent without copying
and received with `np.frombuffer`, so a large mesh costs no serialisation.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import ProtocolError

PROTOCOL_VERSION = 2  # 2: edit requests (operations, targets, latents on the wire)
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"

# Clients with a job in flight send a heartbeat every HEARTBEAT_INTERVAL seconds and the
# engine echoes each one; either side that hears nothing for HEARTBEAT_TIMEOUT seconds
# treats the other as dead.
HEARTBEAT_INTERVAL = 0.5
HEARTBEAT_TIMEOUT = 3.0

MAX_HEADER_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 256 * 1024 * 1024
# The engine still reads frames up to this size, so that a request over MAX_REQUEST_BYTES is
# answered with message_too_large; a larger frame drops the connection (the engine will not
# hold it in memory). The reference client refuses oversized requests before sending.
MAX_FRAME_READ = 2 * MAX_REQUEST_BYTES
MAX_FRAMES = 256
MAX_PARTS = 64
MAX_PART_INDEX = 9999
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1
MAX_SEARCH_RESULTS = 100
MAX_IMAGE_SIDE = 4096
MAX_STRING = 256

REQUEST_TYPES = (
    "hello", "generate", "edit", "candidates", "batch", "library.search", "library.asset",
    "cancel", "status", "shutdown", "heartbeat",
)
REPLY_TYPES = ("hello", "accepted", "progress", "result", "error", "status", "heartbeat")
JOB_TYPES = ("generate", "edit", "candidates", "batch", "library.search", "library.asset")
PART_REQUESTS = ("edit", "candidates")  # requests that carry parts
# What an edit does to its target parts (the part editor, engine/pipelines/editor.py).
EDIT_OPERATIONS = ("refine", "swap", "place", "interpolate", "assemble")

# Wire dtype name -> numpy dtype. Multi-byte types are little-endian on the wire.
# "bytes" is an opaque byte string (an encoded image, a thumbnail), shape [length].
DTYPES = {
    "bytes": np.dtype("u1"),
    "uint8": np.dtype("u1"),
    "int32": np.dtype("<i4"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
_DTYPE_NAMES = {dtype.newbyteorder("="): name for name, dtype in DTYPES.items()
                if name != "bytes"}

_HEADER_KEYS = ("protocol", "type", "job", "body", "arrays")
_DESCRIPTOR_KEYS = ("name", "dtype", "shape", "nbytes", "frame")
_JOB_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ARRAY_NAME = re.compile(r"[A-Za-z0-9_./-]{1,64}")
_MAX_NDIM = 4


@dataclass
class Message:
    """One protocol message: header fields plus named arrays (numpy arrays or bytes)."""

    type: str
    job: str | None
    body: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


@dataclass
class Part:
    """One part, the project's only part type (dataset assets, the library, pipelines, the
    wire and the add-on): a mesh in its local frame, its rigid transform into the object
    frame, a `category_part` label, its index in the object, and an id shared by identical
    meshes. `material` (a dataset asset's colour) stays in the engine; `latent` (the VAE latent a
    pipeline decoded it from, in the object frame) travels when present, so that an asset
    can be edited later by whoever holds it."""

    vertices: np.ndarray  # float32 (V, 3)
    faces: np.ndarray  # int32 (F, 3), indices into vertices
    transform: np.ndarray  # float64 (4, 4), row-major, local -> object frame
    label: str
    index: int
    mesh_id: str | None = None
    material: int = 0  # index into the asset's materials
    latent: np.ndarray | None = None  # (T, C) float32, object frame

    def object_vertices(self) -> np.ndarray:
        """Vertices in the object frame (float64)."""
        return self.vertices.astype(np.float64) @ self.transform[:3, :3].T + self.transform[:3, 3]


@dataclass
class Result:
    """What a job returns: parts, free-form JSON metadata, and extra named arrays
    (for example a `thumbnail` byte string)."""

    parts: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- framing


def encode(message: Message) -> list:
    """Frames for `message`: the JSON header, then one raw frame per array (not copied)."""
    descriptors, frames = [], []
    for name, value in message.arrays.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = memoryview(value).cast("B")
            dtype, shape = "bytes", [data.nbytes]
        else:
            dtype = _DTYPE_NAMES.get(np.asarray(value).dtype.newbyteorder("="))
            if dtype is None:
                raise TypeError(f"array {name!r} has dtype {np.asarray(value).dtype}; "
                                f"the protocol carries {', '.join(DTYPES)}")
            data = np.ascontiguousarray(value, dtype=DTYPES[dtype])
            shape = list(data.shape)
        descriptors.append({"name": name, "dtype": dtype, "shape": shape,
                            "nbytes": data.nbytes, "frame": len(frames) + 1})
        frames.append(data)
    header = {"protocol": PROTOCOL_VERSION, "type": message.type, "job": message.job,
              "body": message.body, "arrays": descriptors}
    return [json.dumps(header, separators=(",", ":")).encode(), *frames]


def decode(frames: list, max_bytes: int | None = None) -> Message:
    """Parse and validate a received message (zmq.Frame or bytes objects).

    Checks the envelope only: header syntax, version, type, job id, and that every array
    descriptor matches its frame exactly. Raises ProtocolError with a specific code.
    """
    buffers = [_buffer(f) for f in frames]
    if not buffers:
        raise ProtocolError("malformed_header", "empty message: expected a JSON header frame")
    if len(buffers) > MAX_FRAMES:
        raise ProtocolError("too_many_frames",
                            f"message has {len(buffers)} frames; the limit is {MAX_FRAMES}")
    total = sum(b.nbytes for b in buffers)
    if max_bytes is not None and total > max_bytes:
        raise ProtocolError("message_too_large",
                            f"message is {total} bytes; the limit is {max_bytes}")
    header = _parse_header(buffers[0])
    job = header.get("job") if _is_job_id(header.get("job")) else None
    try:
        message = _check_header(header, job)
        message.arrays = _decode_arrays(header["arrays"], buffers)
    except ProtocolError as error:
        error.job = job
        raise
    return message


def _buffer(frame) -> memoryview:
    view = frame.buffer if hasattr(frame, "buffer") else memoryview(frame)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _parse_header(buffer: memoryview) -> dict:
    if buffer.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError("header_too_large",
                            f"header is {buffer.nbytes} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(buffer).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError("malformed_header", f"header is not valid UTF-8 JSON ({error})")
    if not isinstance(header, dict):
        raise ProtocolError("malformed_header",
                            f"header must be a JSON object, got {type(header).__name__}")
    return header


def _check_header(header: dict, job: str | None) -> Message:
    _check_keys(header, required=_HEADER_KEYS, optional=(), where="header")
    version = header["protocol"]
    if not _is_int(version):
        raise ProtocolError("invalid_field", "header field 'protocol' must be an integer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_protocol",
                            f"message uses protocol version {version}, this side speaks "
                            f"version {PROTOCOL_VERSION}; update the add-on and the engine "
                            "to the same release")
    kind = header["type"]
    if kind not in REQUEST_TYPES and kind not in REPLY_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}")
    if header["job"] is None:
        if kind not in ("heartbeat", "error"):
            raise ProtocolError("invalid_job_id", f"a {kind!r} message needs a job id")
    elif job is None:
        raise ProtocolError("invalid_job_id", "job id must be 1-64 characters from "
                            "A-Z a-z 0-9 _ . : -")
    if not isinstance(header["body"], dict):
        raise ProtocolError("invalid_field", "header field 'body' must be a JSON object")
    if not isinstance(header["arrays"], list):
        raise ProtocolError("invalid_field", "header field 'arrays' must be a list")
    return Message(type=kind, job=job, body=header["body"])


def _decode_arrays(descriptors: list, buffers: list) -> dict:
    arrays, used = {}, set()
    for position, descriptor in enumerate(descriptors):
        where = f"arrays[{position}]"
        if not isinstance(descriptor, dict):
            raise ProtocolError("invalid_array", f"{where} must be a JSON object")
        _check_keys(descriptor, required=_DESCRIPTOR_KEYS, optional=(), where=where,
                    code="invalid_array")
        name, dtype, shape = descriptor["name"], descriptor["dtype"], descriptor["shape"]
        nbytes, index = descriptor["nbytes"], descriptor["frame"]
        if not isinstance(name, str) or not _ARRAY_NAME.fullmatch(name):
            raise ProtocolError("invalid_array", f"{where}: name must be 1-64 characters "
                                "from A-Z a-z 0-9 _ . / -")
        if name in arrays:
            raise ProtocolError("invalid_array", f"array {name!r} is described twice")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ProtocolError("invalid_array", f"array {name!r}: unsupported dtype "
                                f"{dtype!r} (expected one of {', '.join(DTYPES)})")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= _MAX_NDIM
                or not all(_is_int(n) and n >= 0 for n in shape)
                or (dtype == "bytes" and len(shape) != 1)):
            raise ProtocolError("invalid_array", f"array {name!r}: shape must be a list of "
                                f"1-{_MAX_NDIM} non-negative integers ([length] for bytes)")
        if not _is_int(nbytes) or nbytes < 0:
            raise ProtocolError("invalid_array", f"array {name!r}: nbytes must be a "
                                "non-negative integer")
        if not _is_int(index) or not 1 <= index < len(buffers):
            raise ProtocolError("frame_mismatch", f"array {name!r} refers to frame {index!r} "
                                f"but the message has data frames 1..{len(buffers) - 1}")
        if index in used:
            raise ProtocolError("frame_mismatch", f"frame {index} is described twice")
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if expected != nbytes:
            raise ProtocolError("byte_count_mismatch", f"array {name!r}: {dtype} shape "
                                f"{shape} is {expected} bytes but nbytes says {nbytes}")
        if buffers[index].nbytes != nbytes:
            raise ProtocolError("byte_count_mismatch", f"array {name!r}: nbytes says {nbytes} "
                                f"but frame {index} holds {buffers[index].nbytes} bytes")
        used.add(index)
        arrays[name] = _to_value(buffers[index], dtype, shape)
    extra = sorted(set(range(1, len(buffers))) - used)
    if extra:
        raise ProtocolError("frame_mismatch", f"frames {extra} are not described in 'arrays'")
    return arrays


def _to_value(buffer: memoryview, dtype: str, shape: list):
    if dtype == "bytes":
        return bytes(buffer)
    array = np.frombuffer(buffer, dtype=DTYPES[dtype]).reshape(shape)
    return array if array.flags.aligned else array.copy()


# --------------------------------------------------------------------------- request schema

_REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """Type and range of one body field. A default of None means "the pipeline decides"."""

    kind: type
    default: Any = _REQUIRED
    low: float | None = None
    high: float | None = None
    choices: tuple = ()


_STEPS = Field(int, None, 1, MAX_STEPS)
_GUIDANCE = Field(float, None, 0.0, MAX_GUIDANCE)
_SEED = Field(int, 0, 0, MAX_SEED)

REQUEST_FIELDS: dict[str, dict[str, Field]] = {
    "hello": {"client": Field(str, None)},
    "generate": {"pipeline": Field(str, "partrag"), "parts": Field(int, None, 1, MAX_PARTS),
                 "steps": _STEPS, "guidance": _GUIDANCE, "seed": _SEED,
                 "top_k": Field(int, None, 0, MAX_SEARCH_RESULTS)},
    "edit": {"pipeline": Field(str, "partrag"), "parts": Field(list), "targets": Field(list),
             "operation": Field(str, "refine", choices=EDIT_OPERATIONS),
             "source": Field(str, None), "alpha": Field(float, None, 0.0, 1.0),
             "strength": Field(float, None, 0.0, 1.0), "steps": _STEPS, "guidance": _GUIDANCE,
             "seed": _SEED, "top_k": Field(int, None, 0, MAX_SEARCH_RESULTS)},
    "candidates": {"pipeline": Field(str, "partrag"), "parts": Field(list),
                   "k": Field(int, 12, 1, MAX_SEARCH_RESULTS), "label": Field(str, None)},
    "batch": {"pipeline": Field(str, "partrag"), "input": Field(str), "out": Field(str),
              "parts": Field(int, None, 1, MAX_PARTS), "seed": _SEED,
              "blend": Field(bool, False), "retry_failed": Field(bool, False)},
    "library.search": {"k": Field(int, 8, 1, MAX_SEARCH_RESULTS),
                       "level": Field(str, "object", choices=("object", "part")),
                       "category": Field(str, None)},
    "library.asset": {"asset_id": Field(str), "thumbnail": Field(bool, True),
                      "parts": Field(bool, True)},
    "cancel": {}, "status": {}, "shutdown": {}, "heartbeat": {},
}

# Request type -> (required array names, optional array names); edit requests also carry
# the arrays of the parts they list (see part_array_names).
REQUEST_ARRAYS: dict[str, tuple[tuple, tuple]] = {
    "generate": (("image",), ()),
    "edit": ((), ("image",)),
    "library.search": (("image",), ()),
}

_KIND_WORDS = {int: "an integer", float: "a finite number", str: "a string",
               bool: "true or false", list: "a list"}


def validate_request(message: Message) -> dict:
    """Check a request's body and array names against its schema; return the body with
    defaults filled in. Array contents (images, meshes) are checked by their consumers."""
    if message.type not in REQUEST_TYPES:
        raise ProtocolError("unknown_type", f"{message.type!r} is not a request; requests "
                            f"are: {', '.join(REQUEST_TYPES)}")
    fields = REQUEST_FIELDS[message.type]
    _check_keys(message.body, required=[k for k, f in fields.items() if f.default is _REQUIRED],
                optional=list(fields), where=f"{message.type} body")
    body = {name: _check_field(name, message.body.get(name, spec.default), spec)
            for name, spec in fields.items()}
    required, optional = REQUEST_ARRAYS.get(message.type, ((), ()))
    if message.type in PART_REQUESTS:
        most = MAX_PARTS if message.type == "edit" else 1
        if not 1 <= len(body["parts"]) <= most:
            raise ProtocolError("invalid_part", f"{message.type} carries 1 to {most} part(s), "
                                f"got {len(body['parts'])}")
        required = required + part_array_names(len(body["parts"]))
        optional = optional + part_latent_names(len(body["parts"]))
    missing = [name for name in required if name not in message.arrays]
    if missing:
        raise ProtocolError("missing_array", f"{message.type} needs array(s) {missing}")
    extra = sorted(set(message.arrays) - set(required) - set(optional))
    if extra:
        raise ProtocolError("unexpected_array", f"{message.type} does not take array(s) {extra}")
    return body


def _check_field(name: str, value, spec: Field):
    if value is None and spec.default is None:
        return None
    ok = isinstance(value, spec.kind) and not (spec.kind is not bool and isinstance(value, bool))
    if spec.kind is float:
        ok = _is_number(value) and math.isfinite(value)
    if spec.kind is str:
        ok = ok and 1 <= len(value) <= MAX_STRING
    in_range = ok and (spec.low is None or value >= spec.low) and (
        spec.high is None or value <= spec.high) and (not spec.choices or value in spec.choices)
    if in_range:
        return float(value) if spec.kind is float else value
    wanted = _KIND_WORDS[spec.kind]
    if spec.choices:
        wanted = "one of " + ", ".join(repr(c) for c in spec.choices)
    elif spec.low is not None:
        wanted += f" from {spec.low:g} to {spec.high:g}"
    elif spec.kind is str:
        wanted += f" of 1-{MAX_STRING} characters"
    raise ProtocolError("invalid_field", f"field {name!r} must be {wanted}, got {_show(value)}")


# --------------------------------------------------------------------------- parts


def part_array_names(count: int) -> tuple:
    """Names of the arrays that carry parts 0..count-1 of a message."""
    return tuple(f"parts/{n}/{key}" for n in range(count)
                 for key in ("vertices", "faces", "transform"))


def part_latent_names(count: int) -> tuple:
    """Names of the optional arrays with the parts' latents (float32 (T, C))."""
    return tuple(f"parts/{n}/latent" for n in range(count))


def encode_parts(parts: Iterable[Part]) -> tuple[list, dict]:
    """(JSON part descriptions, arrays) for a message body's "parts" field; a part's latent
    travels when it has one (so an asset can be edited later)."""
    metas, arrays = [], {}
    for n, part in enumerate(parts):
        metas.append({"index": part.index, "label": part.label, "mesh_id": part.mesh_id})
        arrays[f"parts/{n}/vertices"] = part.vertices
        arrays[f"parts/{n}/faces"] = part.faces
        arrays[f"parts/{n}/transform"] = part.transform
        if part.latent is not None:
            arrays[f"parts/{n}/latent"] = np.ascontiguousarray(part.latent, np.float32)
    return metas, arrays


def decode_parts(metas, arrays: Mapping) -> list:
    """Validated Parts from a body's "parts" list and the message's arrays.

    Raises ProtocolError("invalid_part" / "array_mismatch") naming the offending part.
    """
    if not isinstance(metas, list) or len(metas) > MAX_PARTS:
        raise ProtocolError("invalid_part", f"'parts' must be a list of at most {MAX_PARTS}")
    parts, seen = [], set()
    for n, meta in enumerate(metas):
        where = f"parts[{n}]"
        if not isinstance(meta, dict):
            raise ProtocolError("invalid_part", f"{where} must be a JSON object")
        _check_keys(meta, required=("index", "label", "mesh_id"), optional=(), where=where,
                    code="invalid_part")
        index, label, mesh_id = meta["index"], meta["label"], meta["mesh_id"]
        if not _is_int(index) or not 0 <= index <= MAX_PART_INDEX or index in seen:
            raise ProtocolError("invalid_part", f"{where}: index must be a unique integer "
                                f"from 0 to {MAX_PART_INDEX}, got {_show(index)}")
        if not isinstance(label, str) or len(label) > MAX_STRING:
            raise ProtocolError("invalid_part", f"{where}: label must be a string")
        if mesh_id is not None and (not isinstance(mesh_id, str) or len(mesh_id) > MAX_STRING):
            raise ProtocolError("invalid_part", f"{where}: mesh_id must be a string or null")
        seen.add(index)
        vertices = _part_array(arrays, n, "vertices", "float32", (None, 3))
        faces = _part_array(arrays, n, "faces", "int32", (None, 3))
        transform = _part_array(arrays, n, "transform", "float64", (4, 4))
        if not (np.isfinite(vertices).all() and np.isfinite(transform).all()):
            raise ProtocolError("invalid_part", f"{where}: vertices and transform must be finite")
        if faces.min() < 0 or faces.max() >= len(vertices):
            raise ProtocolError("invalid_part", f"{where}: face indices must lie in "
                                f"0..{len(vertices) - 1}")
        latent = None
        if f"parts/{n}/latent" in arrays:
            latent = _part_array(arrays, n, "latent", "float32", (None, None))
            if not np.isfinite(latent).all():
                raise ProtocolError("invalid_part", f"{where}: latent must be finite")
        parts.append(Part(vertices, faces, transform, label, index, mesh_id, latent=latent))
    return parts


def _part_array(arrays: Mapping, n: int, key: str, dtype: str, shape: tuple) -> np.ndarray:
    name = f"parts/{n}/{key}"
    array = arrays.get(name)
    if array is None:
        raise ProtocolError("missing_array", f"part {n} has no {name!r} array")
    if not isinstance(array, np.ndarray):
        raise ProtocolError("array_mismatch", f"{name!r} must be a {dtype} array")
    good_shape = array.ndim == len(shape) and all(
        want is None or have == want for have, want in zip(array.shape, shape))
    if array.dtype != DTYPES[dtype] or not good_shape or array.size == 0:
        wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ProtocolError("array_mismatch", f"{name!r} must be a non-empty {dtype} {wanted} "
                            f"array, got {array.dtype} {tuple(array.shape)}")
    return array


def encode_result(job: str, result: Result) -> Message:
    """The `result` reply carrying `result` (checks the pipeline produced valid parts)."""
    metas, arrays = encode_parts(result.parts)
    clash = [name for name in result.arrays if name.startswith("parts/")]
    if clash:
        raise ValueError(f"result arrays {clash} use the reserved 'parts/' prefix")
    message = Message("result", job, {"parts": metas, "metadata": result.metadata},
                      {**arrays, **result.arrays})
    decode_parts(metas, {name: np.asarray(a) for name, a in arrays.items()})
    return message


def decode_result(message: Message) -> Result:
    """The Result carried by a `result` reply."""
    parts = decode_parts(message.body.get("parts", []), message.arrays)
    extra = {k: v for k, v in message.arrays.items() if not k.startswith("parts/")}
    return Result(parts, message.body.get("metadata", {}), extra)


def error_message(job: str | None, code: str, text: str) -> Message:
    return Message("error", job, {"code": code, "message": text})


# --------------------------------------------------------------------------- helpers


def _check_keys(obj: dict, required, optional, where: str, code: str | None = None) -> None:
    missing = [k for k in required if k not in obj]
    if missing:
        raise ProtocolError(code or "missing_field", f"{where} lacks field(s) {missing}")
    extra = sorted(set(obj) - set(required) - set(optional))
    if extra:
        raise ProtocolError(code or "unexpected_field", f"{where} has unknown field(s) {extra}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_job_id(value) -> bool:
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
