"""Reference-image preparation shared by training and inference, as the reference pipeline
does it: find the object (alpha, or a detected uniform background), crop to it, pad to a
square with a fixed margin. Training views go through the same function, so the DiT sees
objects framed the same way whatever the user's framing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MARGIN = 0.1  # padding on each side, as a fraction of the object's longer side
BACKGROUND_TOLERANCE = 24  # max per-channel distance from the border colour
UNIFORM_BORDER = 0.9  # fraction of border pixels that must match for a "uniform" background


class ImageError(ValueError):
    """An image the pipeline cannot use (no object found, wrong dtype or shape)."""


def border_colour(rgb: np.ndarray) -> np.ndarray | None:
    """The median border colour when the border is uniform, else None."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    colour = np.median(border, axis=0)
    close = np.abs(border - colour).max(1) <= BACKGROUND_TOLERANCE
    return colour if close.mean() >= UNIFORM_BORDER else None


def remove_background(rgb: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) -> RGBA whose alpha drops the background: the pixels close to the
    uniform border colour that connect to the border. A non-uniform border is an error
    (pass an RGBA image or skip removal)."""
    colour = border_colour(rgb)
    if colour is None:
        raise ImageError("the image has no uniform background to remove; pass an RGBA image "
                         "with the object cut out, or skip background removal")
    similar = np.abs(rgb.astype(np.int16) - colour).max(-1) <= BACKGROUND_TOLERANCE
    regions, _ = ndimage.label(similar)
    edge = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    background = np.isin(regions, edge[edge > 0])
    alpha = np.where(background, 0, 255).astype(np.uint8)
    return np.concatenate([rgb, alpha[..., None]], -1)


def to_rgba(image: np.ndarray, remove_bg: bool = True) -> np.ndarray:
    """uint8 RGB or RGBA -> RGBA; RGB gets its background removed unless `remove_bg` is
    False (then the whole image is the object)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"images must be uint8 (H, W, 3) or (H, W, 4), got {image.dtype} "
                         f"{image.shape}")
    if image.shape[2] == 4:
        return image
    if remove_bg:
        return remove_background(image)
    return np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], -1)


def frame_object(rgba: np.ndarray, mask: np.ndarray | None = None,
                 margin: float = MARGIN) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop RGBA (and an aligned mask) to the opaque pixels' bounding box and pad to a
    centred square with `margin` of transparent border (mask padding: 255, background)."""
    opaque = rgba[..., 3] >= 128
    if not opaque.any():
        raise ImageError("the image has no opaque (object) pixels")
    rows, cols = np.flatnonzero(opaque.any(1)), np.flatnonzero(opaque.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = int(round(max(bottom - top, right - left) * (1 + 2 * margin)))
    oy, ox = (side - (bottom - top)) // 2, (side - (right - left)) // 2
    out = np.zeros((side, side, 4), np.uint8)
    out[oy:oy + bottom - top, ox:ox + right - left] = rgba[top:bottom, left:right]
    framed_mask = None
    if mask is not None:
        framed_mask = np.full((side, side), 255, mask.dtype)
        framed_mask[oy:oy + bottom - top, ox:ox + right - left] = mask[top:bottom, left:right]
    return out, framed_mask
