"""Reference-image preparation shared by training and inference, as the reference pipeline
does it: find the object (alpha, a detected uniform background, or a GrabCut cut-out of a
cluttered one), crop to it, pad to a square with a fixed margin. Training views go through
the same function, so the DiT sees objects framed the same way whatever the user's framing."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from bridge.errors import ProtocolError, RequestRefused
from bridge.protocol import MAX_IMAGE_SIDE

MARGIN = 0.1  # padding on each side, as a fraction of the object's longer side
BACKGROUND_TOLERANCE = 24  # max per-channel distance from the border colour
UNIFORM_BORDER = 0.9  # fraction of border pixels that must match for a "uniform" background

CUTOUT_SIDE = 256  # GrabCut runs on the image shrunk to this longer side, for speed
EDGE_BAND = 0.02  # band along the edges taken as certain background, as a fraction of the side
GRABCUT_ROUNDS = (2, 2)  # iterations before and after the colour correction
COLOUR_LEVELS = 16  # per channel, for the correction's colour histograms
SMALLEST_PIECE = 0.25  # least size of the pieces kept beside the largest, as a fraction of it
LARGEST_HOLE = 0.005  # holes filled in the cut-out, as a fraction of its area
OBJECT_AREA = (0.01, 0.9)  # plausible fraction of the image that an object covers
EDGE_CONTACT = 0.5  # most of the band's inner edge that a plausible object runs along
MAIN_PIECE = 0.5  # least share of the cut-out in its largest component: one object, not a pattern


class ImageError(RequestRefused):
    """An image the pipeline cannot use: no object found in it, or not an image array."""

    def __init__(self, message: str):
        super().__init__("no_foreground", message)


def border_colour(rgb: np.ndarray) -> np.ndarray | None:
    """The median border colour when the border is uniform, else None."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    colour = np.median(border, axis=0)
    close = np.abs(border - colour).max(1) <= BACKGROUND_TOLERANCE
    return colour if close.mean() >= UNIFORM_BORDER else None


def uniform_background_alpha(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Alpha that drops the pixels close to the border `colour` that connect to the border:
    exact, and fast, for studio shots and renders on a plain backdrop."""
    similar = np.abs(rgb.astype(np.int16) - colour).max(-1) <= BACKGROUND_TOLERANCE
    regions, _ = ndimage.label(similar)
    edge = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    return np.where(np.isin(regions, edge[edge > 0]), 0, 255).astype(np.uint8)


def no_cutout(reason: str) -> ImageError:
    return ImageError(f"the image has no uniform background and {reason}; pass an RGBA image "
                      "with the object cut out, or skip background removal")


def edge_band(shape: tuple[int, int], width: int) -> np.ndarray:
    band = np.ones(shape, bool)
    band[width:-width, width:-width] = False
    return band


def grabcut(small: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Foreground of `small` by GrabCut with `band` as certain background. The first round
    learns its object colours from the whole interior, so background enclosed by the object
    (between chair legs) tends to stay in; a pixel whose colour is commoner in the
    background than in the object (histograms blurred by a bin, so slightly varying shades
    count together) is handed back as probable background before a second round."""
    import cv2

    cv2.setRNGSeed(0)  # GrabCut's k-means start: the same image always gets the same cut-out
    mask = np.where(band, cv2.GC_BGD, cv2.GC_PR_FGD).astype(np.uint8)
    first, second = GRABCUT_ROUNDS
    foreground = grabcut_round(small, mask, first)
    bins = (small // (256 // COLOUR_LEVELS)).astype(np.int32) @ COLOUR_LEVELS ** np.arange(3)
    inside, outside = (colour_histogram(bins[pixels]) for pixels in (foreground, ~foreground))
    mask[foreground & (inside[bins] < outside[bins])] = cv2.GC_PR_BGD
    return grabcut_round(small, mask, second)


def colour_histogram(bins: np.ndarray) -> np.ndarray:
    """Pixel counts per colour bin, blurred by one bin across the colour cube."""
    counts = np.bincount(bins, minlength=COLOUR_LEVELS ** 3).reshape((COLOUR_LEVELS,) * 3)
    return ndimage.gaussian_filter(counts.astype(np.float32), 1.0).ravel()


def grabcut_round(small: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """Run GrabCut on `mask` in place; the probable-foreground pixels after it (the mask
    never holds certain foreground)."""
    import cv2

    if not (mask == cv2.GC_PR_FGD).any():  # GrabCut needs samples of both
        raise no_cutout("no object stands out from it")
    cv2.grabCut(small, mask, None, np.zeros((1, 65)), np.zeros((1, 65)), iterations,
                cv2.GC_INIT_WITH_MASK)
    return mask == cv2.GC_PR_FGD


def tidy(foreground: np.ndarray) -> np.ndarray:
    """Keep the largest component and those of a meaningful size; fill pinholes but not
    openings such as the space between an object's legs."""
    pieces, count = ndimage.label(foreground)
    if count == 0:
        return foreground
    sizes = np.bincount(pieces.ravel())[1:]
    kept = np.isin(pieces, 1 + np.flatnonzero(sizes >= SMALLEST_PIECE * sizes.max()))
    holes, count = ndimage.label(ndimage.binary_fill_holes(kept) & ~kept)
    if count:
        sizes = np.bincount(holes.ravel())[1:]
        kept |= np.isin(holes, 1 + np.flatnonzero(sizes <= LARGEST_HOLE * kept.sum()))
    return kept


def check_cutout(foreground: np.ndarray, width: int) -> None:
    """Refuse a cut-out that cannot be one object inside the frame."""
    area = foreground.mean()
    if area < OBJECT_AREA[0]:
        raise no_cutout("no object stands out from it")
    if area > OBJECT_AREA[1]:
        raise no_cutout(f"the cut-out covers {area:.0%} of it")
    pieces, _ = ndimage.label(foreground)
    sizes = np.bincount(pieces.ravel())[1:]
    if sizes.max() < MAIN_PIECE * sizes.sum():
        raise no_cutout(f"the cut-out falls apart into {len(sizes)} pieces, none of them most "
                        "of it")
    inner_edge = edge_band(foreground.shape, width + 1) & ~edge_band(foreground.shape, width)
    if foreground[inner_edge].mean() > EDGE_CONTACT:
        raise no_cutout("the cut-out runs along the image edges (the object must lie "
                        "inside the frame)")


def cutout_alpha(rgb: np.ndarray) -> np.ndarray:
    """Alpha of the object on a cluttered background, by GrabCut on a shrunk copy; the
    object must lie inside the frame, roughly centred, with background all along the
    edges. A result that cannot be an object is an ImageError, never a silent guess."""
    import cv2

    height, width = rgb.shape[:2]
    scale = min(1.0, CUTOUT_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
    band_width = max(2, round(EDGE_BAND * max(size)))
    if min(size) <= 2 * band_width:
        raise no_cutout(f"{width}x{height} pixels are too few to cut an object out of")
    foreground = tidy(grabcut(small, edge_band(small.shape[:2], band_width)))
    check_cutout(foreground, band_width)
    grown = cv2.resize(foreground.astype(np.float32), (width, height),
                       interpolation=cv2.INTER_LINEAR)
    return np.where(grown >= 0.5, 255, 0).astype(np.uint8)


def remove_background(rgb: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) -> RGBA whose alpha drops the background: exactly when it is uniform,
    by a GrabCut cut-out when it is not."""
    colour = border_colour(rgb)
    alpha = cutout_alpha(rgb) if colour is None else uniform_background_alpha(rgb, colour)
    return np.concatenate([rgb, alpha[..., None]], -1)


def to_rgba(image: np.ndarray, remove_bg: bool = True) -> np.ndarray:
    """uint8 RGB or RGBA -> RGBA. An alpha with any transparency is the cut-out and is kept;
    otherwise (RGB, or a fully opaque alpha as decoded JPEGs get) the background is removed
    unless `remove_bg` is False (then the whole image is the object)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"images must be uint8 (H, W, 3) or (H, W, 4), got {image.dtype} "
                         f"{image.shape}")
    if image.shape[2] == 4 and (image[..., 3] < 255).any():
        return image
    rgb = np.ascontiguousarray(image[..., :3])
    if remove_bg:
        return remove_background(rgb)
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)


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


# ---- image files as requests carry them (the server's validation and the batch rows)

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


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
