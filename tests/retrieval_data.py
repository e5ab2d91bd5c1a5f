"""Tiny data for the retrieval tests: a dataset folder whose 'renders' are drawn with numpy
(each part a coloured band, so masks and images agree) and a tiny VecSet VAE folder."""

import json

import numpy as np
from PIL import Image

from engine.data.categories import generate_asset
from engine.data.dataset import save_asset_arrays
from engine.models.vecset_vae import VecSetVAE, VecSetVAEConfig
from engine.training.vae import ENCODE_POINTS_KEY, ENCODE_TOKENS_KEY, RECIPES

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
    manifest = {"splits": {}}
    for s, (split, names) in enumerate(SPLITS.items()):
        records = []
        for i, category in enumerate(names):
            seed = 100 * s + i
            asset = generate_asset(category, seed)
            name = f"{category}-{seed:010d}"
            folder = root / split / name
            folder.mkdir(parents=True)
            save_asset_arrays(folder / "asset.npz", asset)
            images, masks = draw_views(len(asset.parts), seed)
            views = []
            for k, (image, mask) in enumerate(zip(images, masks)):
                Image.fromarray(image).save(folder / f"view_{k:02d}.png")
                Image.fromarray(mask).save(folder / f"mask_{k:02d}.png")
                views.append({"image": f"view_{k:02d}.png", "mask": f"mask_{k:02d}.png"})
            (folder / "meta.json").write_text(json.dumps(
                {"category": category, "seed": seed, "labels": asset.labels,
                 "params": asset.params, "views": views}))
            records.append({"name": name, "category": category, "parts": len(asset.parts)})
        manifest["splits"][split] = records
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def write_tiny_vae(folder):
    vae = VecSetVAE(VecSetVAEConfig(**RECIPES["tiny"].model))
    vae.extra_config.update({ENCODE_POINTS_KEY: 64, ENCODE_TOKENS_KEY: 8})
    vae.save_pretrained(folder)
    return folder
