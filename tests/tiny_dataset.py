"""Tiny dataset folders for the tests, in the layout `python -m engine data` writes: per
object asset.npz and meta.json (and, when a test draws them, view/mask PNGs standing in for
renders), and manifest.json."""

import json
from typing import Callable

import numpy as np
from PIL import Image

from engine.data.asset import PartAsset
from engine.data.categories import generate_asset
from engine.data.dataset import save_asset_arrays

# (asset, seed) -> RGBA views and their part-index masks
DrawViews = Callable[[PartAsset, int], tuple[list[np.ndarray], list[np.ndarray]]]


def write_dataset(root, splits: dict[str, list[str]], seed_step: int = 10,
                  draw_views: DrawViews | None = None):
    """One generated asset per category named in `splits` ({split: [category, ...]}); the
    i-th object of the s-th split gets seed seed_step·s + i. Returns `root`."""
    manifest = {"splits": {}}
    for s, (split, names) in enumerate(splits.items()):
        records = []
        for i, category in enumerate(names):
            seed = seed_step * s + i
            asset = generate_asset(category, seed)
            name = f"{category}-{seed:010d}"
            folder = root / split / name
            folder.mkdir(parents=True)
            save_asset_arrays(folder / "asset.npz", asset)
            meta = {"category": category, "seed": seed, "labels": asset.labels,
                    "params": asset.params}
            if draw_views is not None:
                meta["views"] = []
                for v, (image, mask) in enumerate(zip(*draw_views(asset, seed))):
                    Image.fromarray(image).save(folder / f"view_{v:02d}.png")
                    Image.fromarray(mask).save(folder / f"mask_{v:02d}.png")
                    meta["views"].append({"image": f"view_{v:02d}.png",
                                          "mask": f"mask_{v:02d}.png"})
            (folder / "meta.json").write_text(json.dumps(meta))
            records.append({"name": name, "category": category, "parts": len(asset.parts),
                            "part_iou": 0.0})
        manifest["splits"][split] = records
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root
