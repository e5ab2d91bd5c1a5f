"""Plausible object colours for reference images.

An object gets a few colours drawn from material families (wood, metal, fabric, ...), and each
part uses one of them by role (frame, cushion, ...). Several parts share a colour, so colour
never gives away the part segmentation; part colours belong in previews and masks only.
"""

from __future__ import annotations

import numpy as np

# Base RGB (linear 0..1) per family; a sample is jittered in HSV-like fashion around one base.
FAMILIES: dict[str, list[tuple[float, float, float]]] = {
    "wood": [(0.55, 0.36, 0.20), (0.72, 0.53, 0.33), (0.36, 0.22, 0.12), (0.80, 0.66, 0.45),
             (0.45, 0.28, 0.18)],
    "metal": [(0.62, 0.63, 0.66), (0.30, 0.31, 0.33), (0.75, 0.66, 0.45), (0.82, 0.83, 0.85),
              (0.18, 0.18, 0.19)],
    "fabric": [(0.55, 0.16, 0.14), (0.20, 0.30, 0.50), (0.35, 0.45, 0.30), (0.70, 0.68, 0.62),
               (0.40, 0.40, 0.42), (0.75, 0.55, 0.30), (0.50, 0.35, 0.55)],
    "plastic": [(0.85, 0.85, 0.82), (0.10, 0.10, 0.11), (0.80, 0.20, 0.15), (0.15, 0.45, 0.75),
                (0.95, 0.75, 0.20), (0.25, 0.60, 0.35)],
    "ceramic": [(0.92, 0.91, 0.88), (0.30, 0.45, 0.60), (0.75, 0.35, 0.25), (0.20, 0.22, 0.25),
                (0.85, 0.80, 0.55)],
    "glass": [(0.35, 0.55, 0.35), (0.55, 0.35, 0.20), (0.70, 0.80, 0.85), (0.25, 0.35, 0.55)],
    "paint": [(0.70, 0.10, 0.10), (0.10, 0.20, 0.45), (0.85, 0.85, 0.88), (0.12, 0.12, 0.13),
              (0.55, 0.57, 0.60), (0.20, 0.40, 0.25), (0.90, 0.60, 0.10)],
    "rubber": [(0.08, 0.08, 0.08), (0.15, 0.15, 0.16)],
    "light": [(0.98, 0.95, 0.82), (0.95, 0.92, 0.90), (0.90, 0.85, 0.70)],
}


def sample_colour(rng: np.random.Generator, family: str) -> np.ndarray:
    base = np.asarray(FAMILIES[family][rng.integers(len(FAMILIES[family]))])
    brightness = rng.uniform(0.85, 1.15)
    tint = rng.normal(0.0, 0.03, 3)
    return np.clip(base * brightness + tint, 0.02, 0.98)


def palette(rng: np.random.Generator, *families: str) -> np.ndarray:
    """One colour per requested family, in order: (len(families), 3)."""
    return np.stack([sample_colour(rng, f) for f in families])
