"""Turn a decoded job message into a pipeline Request, or a specific ProtocolError.

Runs before a job is accepted, so a client learns about a bad image or mesh at once
instead of after waiting in the queue.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bridge.errors import ProtocolError
from bridge.protocol import (MAX_IMAGE_SIDE, PART_REQUESTS, Message, decode_parts,
                             validate_request)

from .pipelines import LIBRARY, Request

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


def parse_request(message: Message) -> Request:
    """Validate every field and array of a job request (generate, edit, candidates,
    library.*)."""
    params = validate_request(message)
    image = message.arrays.get("image")
    parts = []
    if message.type in PART_REQUESTS:
        parts = decode_parts(params.pop("parts"), message.arrays)
    if message.type == "edit":
        _check_targets(params["targets"], parts)
    return Request(
        operation=message.type,
        pipeline=params.pop("pipeline", LIBRARY),
        params=params,
        image=None if image is None else decode_image(image),
        parts=parts,
    )


def decode_image(value) -> np.ndarray:
    """RGBA uint8 (H, W, 4) from encoded PNG/JPEG/WebP bytes or a uint8 (H, W, 3|4) array.

    The size is checked from the file header before any pixel is decoded, so a huge
    image costs nothing.
    """
    if isinstance(value, bytes):
        try:
            image = Image.open(io.BytesIO(value), formats=IMAGE_FORMATS)
        except Image.DecompressionBombError as error:  # far beyond MAX_IMAGE_SIDE
            raise ProtocolError("image_too_large", f"{error}; each side must be at most "
                                f"{MAX_IMAGE_SIDE} pixels (resize it first)")
        except Exception:  # PIL raises several types for unreadable headers
            raise ProtocolError("invalid_image", "image is not a readable PNG, JPEG or WebP file")
        _check_size(*image.size)
        try:
            image.load()
            return np.asarray(image.convert("RGBA"))
        except Exception as error:  # truncated or corrupt pixel data
            raise ProtocolError("invalid_image", f"image data could not be decoded ({error})")
    if value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] not in (3, 4):
        raise ProtocolError("array_mismatch", "image must be encoded PNG/JPEG/WebP bytes or "
                            f"a uint8 (H, W, 3|4) array, got {value.dtype} {value.shape}")
    _check_size(value.shape[1], value.shape[0])
    if value.shape[2] == 4:
        return value
    alpha = np.full(value.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([value, alpha], axis=2)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ProtocolError("invalid_image", f"image is empty ({width}x{height})")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ProtocolError("image_too_large", f"image is {width}x{height}; each side must be "
                            f"at most {MAX_IMAGE_SIDE} pixels (resize it first)")


def _check_targets(targets: list, parts: list) -> None:
    indices = {part.index for part in parts}
    if (not targets or len(set(map(repr, targets))) != len(targets)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i in indices
                       for i in targets)):
        raise ProtocolError("invalid_part", "'targets' must list distinct indices of parts in "
                            f"the request (have {sorted(indices)}), at least one")
