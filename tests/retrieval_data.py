"""Tiny data for the retrieval tests: a dataset folder whose 'renders' are drawn with numpy
(each part a coloured band, so masks and images agree) and a tiny VecSet VAE folder."""

import numpy as np

from engine.models.vecset_vae import VecSetVAE, VecSetVAEConfig
from engine.models.vecset_vae import ENCODE_POINTS_KEY, ENCODE_TOKENS_KEY
from engine.training.vae import RECIPES
from tiny_dataset import write_dataset

SPLITS = {"train": ["chair", "mug", "table", "chair", "mug", "table"],
          "val": ["chair", "mug"], "test": ["chair", "mug", "table"]}
SIZE, VIEWS = 64, 2


def draw_views(num_parts: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGBA images and part-index masks: part k is a band of rows, coloured per part."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(VIEWS):
        mask = np.full((SIZE, SIZE), 255, dtype=np.uint8)
        edges = np.linspace(8, SIZE - 8, num_parts + 1).astype(int)
        left, right = sorted(rng.integers(4, SIZE - 4, 2) + [0, 8])
        for k in range(num_parts):
            mask[edges[k]:edges[k + 1], left:right] = k
        rgba = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
        colours = (np.arange(num_parts)[:, None] * [70, 40, 110] + [40, 90, 20]) % 256
        shown = mask != 255
        rgba[shown, :3] = colours[mask[shown]]
        rgba[shown, 3] = 255
        images.append(rgba)
        masks.append(mask)
    return images, masks


def write_rendered_dataset(root):
    return write_dataset(root, SPLITS, seed_step=100,
                         draw_views=lambda asset, seed: draw_views(len(asset.parts), seed))


def write_tiny_vae(folder):
    vae = VecSetVAE(VecSetVAEConfig(**RECIPES["tiny"].model))
    vae.extra_config.update({ENCODE_POINTS_KEY: 64, ENCODE_TOKENS_KEY: 8})
    vae.save_pretrained(folder)
    return folder
