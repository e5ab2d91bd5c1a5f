"""Contact sheets: a grid of RGBA renders on a light background with small captions.

Sheets are for people looking at data (previews, reports), so they are written atomically:
a viewer or a concurrent job never sees a half-written PNG.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.files import write_atomic
from engine.render.colours import BACKGROUND, preview_colours

SHEET_BACKGROUND = (240, 240, 240)
_CAPTION_HEIGHT = 14
_GAP = 4


def mask_to_rgba(mask: np.ndarray) -> np.ndarray:
    """Part mask (H, W) -> RGBA (H, W, 4) in the preview palette, transparent background."""
    rgba = np.empty(mask.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = preview_colours(256)[mask]
    rgba[..., 3] = np.where(mask == BACKGROUND, 0, 255)
    return rgba


def _tile(image: np.ndarray, side: int) -> Image.Image:
    """RGB(A) array composited on the sheet background and fitted into side x side."""
    im = Image.fromarray(image).convert("RGBA")
    bg = Image.new("RGBA", im.size, SHEET_BACKGROUND + (255,))
    bg.alpha_composite(im)
    bg.thumbnail((side, side), Image.LANCZOS)
    return bg.convert("RGB")


def contact_sheet(images: Sequence[np.ndarray], path: str | os.PathLike,
                  captions: Sequence[str] | None = None, columns: int | None = None,
                  tile: int = 256) -> None:
    """Write `images` (RGBA or RGB uint8) as a grid PNG at `path`, one caption under each tile."""
    if not len(images):
        raise ValueError("no images for the contact sheet")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    cell_w, cell_h = tile + _GAP, tile + _GAP + (_CAPTION_HEIGHT if captions is not None else 0)
    sheet = Image.new("RGB", (columns * cell_w + _GAP, rows * cell_h + _GAP), SHEET_BACKGROUND)
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for i, image in enumerate(images):
        x, y = _GAP + (i % columns) * cell_w, _GAP + (i // columns) * cell_h
        im = _tile(np.asarray(image), tile)
        sheet.paste(im, (x + (tile - im.width) // 2, y + (tile - im.height) // 2))
        if captions is not None:
            draw.text((x + 2, y + tile + 1), captions[i], fill=(40, 40, 40), font=font)
    write_atomic(path, lambda tmp: sheet.save(tmp, format="PNG"))
