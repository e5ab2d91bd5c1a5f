"""Colour codes for the render passes: exact part-id colours and the preview palette.

Blender takes object colours in scene-linear RGB and, with the Standard view transform, writes
sRGB-encoded 8-bit pixels. Id colours are therefore chosen as 8-bit sRGB codes on a coarse grid
(7 levels per channel, 40 apart), sent to Blender linearised, and decoded per channel by
rounding to the nearest level, which is exact as long as the pixel is off by less than 20.
"""

from __future__ import annotations

import numpy as np

_LEVEL0, _STEP, _LEVELS = 15, 40, 7
MAX_PARTS = 255  # mask value 255 is the background
BACKGROUND = 255
_TOLERANCE = 6  # largest per-channel error accepted (measured: 0 on every category)

# Distinct, saturated sRGB colours for part previews (cycled when there are more parts).
PREVIEW_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
], dtype=np.uint8)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> scene-linear (the IEC 61966-2-1 curve)."""
    c = np.asarray(rgb, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def id_codes(n: int) -> np.ndarray:
    """The 8-bit sRGB colour of part ids 0..n-1, (n, 3) uint8."""
    if n > MAX_PARTS:
        raise ValueError(f"at most {MAX_PARTS} parts fit in a uint8 mask, got {n}")
    ids = np.arange(n)
    levels = np.stack([ids % _LEVELS, ids // _LEVELS % _LEVELS, ids // _LEVELS ** 2], axis=1)
    return (_LEVEL0 + _STEP * levels).astype(np.uint8)


def preview_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 sRGB colours, neighbouring part indices always differ."""
    return PREVIEW_PALETTE[np.arange(n) % len(PREVIEW_PALETTE)]


def decode_ids(rgba: np.ndarray, n: int) -> np.ndarray:
    """Id-pass pixels (H, W, 4) uint8 -> mask (H, W) uint8 of part ids, BACKGROUND where alpha is 0.

    Raises if a pixel is partly transparent or not within tolerance of a code: the pass must be
    rendered aliased, unlit and undithered for the decode to be exact.
    """
    alpha = rgba[..., 3]
    if np.any((alpha != 0) & (alpha != 255)):
        raise ValueError("id pass has partly transparent pixels (anti-aliasing must be off)")
    rgb = rgba[..., :3].astype(np.int32)
    levels = np.clip(np.rint((rgb - _LEVEL0) / _STEP), 0, _LEVELS - 1).astype(np.int32)
    ids = levels[..., 0] + _LEVELS * levels[..., 1] + _LEVELS ** 2 * levels[..., 2]
    fg = alpha == 255
    error = np.abs(rgb - (_LEVEL0 + _STEP * levels))[fg]
    if error.size and error.max() > _TOLERANCE:
        raise ValueError(f"id pass colour off by {error.max()} from its code (shading leaked)")
    if fg.any() and ids[fg].max() >= n:
        raise ValueError(f"id pass decodes to part {ids[fg].max()} but the asset has {n} parts")
    mask = np.full(alpha.shape, BACKGROUND, dtype=np.uint8)
    mask[fg] = ids[fg]
    return mask
