"""How a part library stores images and meshes in few bytes, so that a shipped library of
useful size fits a 40 MB bundle. Nothing here loses what the runtime can see:

- RGBA views and thumbnails: lossless WebP, `exact` (colours under transparent pixels kept),
  decoded bit for bit; about half the bytes of the dataset's PNGs.
- part-index masks (0..parts-1, 255 = background): 8-bit greyscale PNG, optimised.
- meshes (library_writer.py): identical part meshes (instances: legs, wheels, ...) are stored
  once, and parts point at their mesh. Faces take the narrowest unsigned type that holds every part-local index
  (uint16 below 65,536 vertices). Vertices are uint16 steps across each mesh's bounding box:
  the error is at most half a step, extent / 131,070 per coordinate. Every asset is in the
  canonical frame (longest side 2, part transforms pure translations, engine.data.asset), so
  that is at most 1.6e-5, 60x inside the 1e-3 tolerance; float16, the same size, would err by
  up to 2.4e-4 (half its spacing just below 1).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

STEPS = 65535  # uint16 quantisation levels across a mesh's bounding box


def encode_rgba(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba).convert("RGBA").save(buffer, format="WEBP", lossless=True,
                                               quality=100, method=4, exact=True)
    return buffer.getvalue()


def encode_mask(mask: np.ndarray) -> bytes:
    if mask.dtype != np.uint8:
        raise ValueError(f"part masks are uint8 part indices, got {mask.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(rgba: np.ndarray, side: int) -> bytes:
    """A view downscaled to side² (RGBA, aspect kept, centred), encoded."""
    image = Image.fromarray(rgba).convert("RGBA")
    image.thumbnail((side, side), Image.LANCZOS)
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return encode_rgba(np.asarray(canvas))


def decode_rgba(data: bytes) -> np.ndarray:
    """(H, W, 4) uint8; WebP drops an alpha channel that is opaque everywhere."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def decode_mask(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def offsets(counts) -> np.ndarray:
    """Counts -> (n+1) int64 start offsets, the last one the total."""
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)


def quantise(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (V, 3) -> origin (3,) float32, step (3,) float32 and q (V, 3) uint16 with
    vertex = origin + q * step (a zero extent gets step 0)."""
    vertices = np.asarray(vertices, np.float32)
    origin = vertices.min(0)
    step = ((vertices.max(0).astype(np.float64) - origin) / STEPS).astype(np.float32)
    q = np.divide(vertices - origin.astype(np.float64), step, where=step > 0,
                  out=np.zeros(vertices.shape))
    return origin, step, np.clip(np.rint(q), 0, STEPS).astype(np.uint16)


def unpack_mesh(arrays: dict[str, np.ndarray], row: int) -> tuple[np.ndarray, np.ndarray]:
    """Mesh `row` of the table: vertices (V, 3) float32 and faces (F, 3) int32."""
    v0, v1 = arrays["mesh_vertices"][row:row + 2]
    f0, f1 = arrays["mesh_faces"][row:row + 2]
    q = arrays["vertices"][v0:v1].astype(np.float64)
    vertices = arrays["mesh_origin"][row].astype(np.float64) + q * arrays["mesh_step"][row]
    return vertices.astype(np.float32), arrays["faces"][f0:f1].astype(np.int32)
