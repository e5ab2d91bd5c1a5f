"""UniPart's latent segmentation as a picture: Ẑ's anchor points (one per latent, from the
Geom-Seg VAE's anchor decoder) coloured by the part they were given, seen from the front and
from the side. Part k has the preview palette's colour k, as in preview.png, so the two
pictures read together. (A bundle carries no whole-object geometry decoder, so the anchors
stand in for the whole-object mesh.)"""

from __future__ import annotations

import numpy as np

from engine.render.colours import preview_colours

VIEWS = ((0, 1), (2, 1))  # (horizontal, vertical) axes: front (x, y), side (z, y)


def draw_segmentation(anchors: np.ndarray, segments: np.ndarray, tile: int = 256) -> np.ndarray:
    """(L, 3) anchors in the canonical frame and (L,) part indices -> (tile, 2·tile, 4) RGBA."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (tile * len(VIEWS), tile), (255, 255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    colours = preview_colours(int(segments.max()) + 1)
    radius = max(2, tile // 85)
    for view, (across, up) in enumerate(VIEWS):
        for point, k in zip(anchors, segments):
            u = view * tile + (point[across] * 0.45 + 0.5) * tile
            v = (0.5 - point[up] * 0.45) * tile
            draw.ellipse([u - radius, v - radius, u + radius, v + radius],
                         fill=tuple(int(c) for c in colours[k][:3]))
    return np.asarray(canvas)
