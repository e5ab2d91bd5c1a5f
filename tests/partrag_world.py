"""A tiny but real PartRAG world for the tests: a dataset with stand-in views, a random
VAE, a DiT trained a few steps with the real training and export code, and a models/
folder as shipped (bundle + part library + the bank made from it). Plain functions, so
engine tests and add-on tests build exactly the same thing."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.cli import main
from engine.models.vecset_vae import VecSetVAE, VecSetVAEConfig
from engine.training.dit import RECIPES, train_dit
from engine.models.vecset_vae import ENCODE_POINTS_KEY, ENCODE_TOKENS_KEY
from engine.training.vae import RECIPES as VAE_RECIPES
from tiny_dataset import write_dataset

SPLITS = {"train": ["chair", "table", "mug", "car", "stool"], "val": ["bottle"],
          "test": ["chair", "bucket"]}
SIZE = 64  # pixels of the stand-in views
LIBRARY_SIZE = 3  # assets in the installed part library


def fake_views(asset, views=2):
    """RGBA images and part masks: every part's XY bounding box, drawn back to front."""
    images, masks = [], []
    for v in range(views):
        rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
        mask = np.full((SIZE, SIZE), 255, np.uint8)
        for k, part in enumerate(asset.parts):
            xyz = part.object_vertices()
            lo = ((xyz.min(0)[:2] * 0.4 + 0.5) * SIZE).astype(int)
            hi = ((xyz.max(0)[:2] * 0.4 + 0.5) * SIZE).astype(int) + 1
            rows = slice(SIZE - hi[1], SIZE - lo[1])
            cols = slice(lo[0] + v, hi[0] + v)
            rgba[rows, cols] = ((40 * k + 30) % 256, 200 - 20 * k, 90, 255)
            mask[rows, cols] = k
        images.append(rgba)
        masks.append(mask)
    return images, masks


def tiny_vae_folder(folder: Path) -> Path:
    """An untrained VAE of the tiny recipe, saved as a diffusers-style folder."""
    torch.manual_seed(0)
    recipe = VAE_RECIPES["tiny"]
    vae = VecSetVAE(VecSetVAEConfig(**recipe.model), **{ENCODE_TOKENS_KEY: recipe.num_tokens,
                                                        ENCODE_POINTS_KEY: recipe.points})
    vae.save_pretrained(folder)
    return folder


def build_world(root: Path) -> dict:
    """Dataset, VAE and a tiny trained bundle under `root`; the bundle is at
    <root>/models/partrag."""
    data = write_dataset(root / "data", SPLITS, draw_views=lambda asset, seed: fake_views(asset))
    vae = tiny_vae_folder(root / "vae")
    recipe = RECIPES["tiny"]
    result, exported = train_dit(data, vae, root / "run", recipe, recipe.train_config(),
                                 root / "cache", export=root / "models" / "partrag",
                                 device="cpu", progress=False)
    assert result.finished and exported is not None
    return {"root": root, "data": data, "vae": vae, "cache": root / "cache",
            "bundle": root / "models" / "partrag"}


def install_models(world: dict, folder: Path) -> Path:
    """A models/ folder as shipped under `folder`: a copy of the bundle beside a part
    library built from the dataset, and the bundle's bank remade from that library."""
    from engine.retrieval.builder import build_library
    from engine.retrieval.encoders import load_encoder
    from engine.retrieval.shape import PartEncoder

    models = folder / "models"
    shutil.copytree(world["bundle"], models / "partrag")
    build_library(world["data"], models / "library", [load_encoder()], PartEncoder(world["vae"]),
                  size=LIBRARY_SIZE, progress=False)
    assert main(["library", "bank", "--library", str(models / "library"),
                 "--model", str(models / "partrag")]) == 0
    return models


def reference_image(world: dict) -> np.ndarray:
    """The first test-split object's first view (RGBA), never seen in training."""
    folder = world["data"] / "test" / json.loads(
        (world["data"] / "manifest.json").read_text())["splits"]["test"][0]["name"]
    return np.asarray(Image.open(folder / "view_00.png").convert("RGBA"))
