"""Training the HCR heads (`python -m engine train retriever ...`) on a dataset's renders.

The image encoder and the VAE are frozen (the paper's learning rate 0 for encoders), so their
outputs are computed once per split into a feature cache (safetensors + JSON):

    tokens   (views, L, C) float16   encoder tokens of every rendered view
    cover    (views, P, L) float16   each part's coverage of the token grid (P = max parts)
    visible  (views, P)              the part shows in that view
    view_object (views,)             which object a view belongs to
    labels   (objects, P) int64      label id per part (-1 = no part), vocabulary in the JSON
    shape    (objects, P, Dz)        mean-pooled VAE latents per part (HCR's y_i)

and every step draws objects and one view of each from it (a pure function of the rng, as
the shared loop requires).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from engine.files import write_atomic, write_json_atomic
from engine.data.dataset import load_asset
from engine.data.vae_data import object_seed, split_names
from engine.models.checkpoint import WEIGHTS_NAME
from engine.retrieval.encoders import ImageEncoder
from engine.retrieval.hcr import HCR, NO_ID, HCRConfig, HCRTrainer
from engine.retrieval.shape import PartEncoder
from engine.retrieval.views import read_views, view_features
from engine.training import recipes
from engine.training.loop import TrainConfig, TrainResult, train
from engine.training.model_card import write_model_card

MAX_PARTS = 8  # the dataset's filter keeps 2-8 parts


@dataclass
class RetrieverRecipe:
    model: dict = field(default_factory=dict)  # HCRConfig overrides (token/latent dims are set)
    train: dict = field(default_factory=dict)  # TrainConfig overrides

    def train_config(self, **overrides) -> TrainConfig:
        given = {k: v for k, v in overrides.items() if v is not None}
        return TrainConfig(**{**self.train, **given})


RECIPES = {
    # Heads only, on cached features: a few minutes on 2 CPU cores.
    "small": RetrieverRecipe(train=dict(steps=3000, batch_size=64, lr=1e-3, warmup_steps=100,
                                        val_every=250, val_batches=4, checkpoint_every=250)),
    # Tests and smoke runs.
    "tiny": RetrieverRecipe(
        model=dict(embed_dim=16, hidden_dim=32, attention_dim=8, queue_size=32),
        train=dict(batch_size=4, warmup_steps=2, log_every=1, val_every=4, val_batches=1,
                   checkpoint_every=4)),
}


def load_recipe(name_or_path: str) -> RetrieverRecipe:
    return recipes.load_recipe(name_or_path, RECIPES)


def cache_paths(cache: Path, split: str) -> tuple[Path, Path]:
    return Path(cache) / f"{split}.safetensors", Path(cache) / f"{split}.json"


def build_features(data: Path, cache: Path, split: str, encoder: ImageEncoder,
                   parts: PartEncoder, limit: int | None = None, progress: bool = True) -> Path:
    """Compute (or reuse) the split's feature cache; refuses a cache made differently."""
    arrays_path, info_path = cache_paths(cache, split)
    names = split_names(data, split)[:limit]
    info = {"version": 1, "encoder": encoder.key, "shape": parts.describe(), "objects": names}
    if arrays_path.is_file() and info_path.is_file():
        found = json.loads(info_path.read_text())
        if {k: v for k, v in found.items() if k != "labels"} != info:
            raise ValueError(f"{arrays_path} holds features of another encoder, VAE or object "
                             f"list; delete it or pass another --cache")
        return arrays_path
    tokens, cover, visible, view_object, labels, shapes = [], [], [], [], [], []
    for i, name in enumerate(tqdm(names, desc=f"retrieval features {split}", unit="obj",
                                  disable=not progress)):
        folder = Path(data) / split / name
        asset = load_asset(folder)
        n = len(asset.parts)
        if n > MAX_PARTS:
            raise ValueError(f"{folder}: {n} parts, at most {MAX_PARTS} supported")
        images, masks = read_views(folder)
        features = view_features(encoder, images, masks, n)
        pad = MAX_PARTS - n
        tokens.append(features.tokens.half().numpy())
        cover.append(np.pad(features.cover.half().numpy(), ((0, 0), (0, pad), (0, 0))))
        visible.append(np.pad(features.cover.sum(-1).numpy() > 0, ((0, 0), (0, pad))))
        view_object.append(np.full(len(images), i))
        latents = parts.encode(asset, object_seed(name)).mean(1)
        shapes.append(np.pad(latents, ((0, pad), (0, 0))))
        labels.append(asset.labels)
    vocabulary = sorted({label for object_labels in labels for label in object_labels})
    ids = {label: k for k, label in enumerate(vocabulary)}
    label_ids = np.full((len(names), MAX_PARTS), NO_ID, dtype=np.int64)
    for i, object_labels in enumerate(labels):
        label_ids[i, :len(object_labels)] = [ids[label] for label in object_labels]
    arrays = {"tokens": np.concatenate(tokens), "cover": np.concatenate(cover),
              "visible": np.concatenate(visible).astype(np.uint8),
              "view_object": np.concatenate(view_object).astype(np.int64),
              "labels": label_ids, "shape": np.stack(shapes).astype(np.float32)}
    Path(cache).mkdir(parents=True, exist_ok=True)
    write_atomic(arrays_path, lambda tmp: save_file(arrays, tmp))
    write_json_atomic(info_path, {**info, "labels": vocabulary})
    return arrays_path


class RetrievalExamples:
    """Batches of one random view of random objects from a feature cache."""

    def __init__(self, path: Path):
        a = load_file(path)
        self.tokens, self.cover = a["tokens"], a["cover"]
        self.visible, self.labels, self.shape = a["visible"].astype(bool), a["labels"], a["shape"]
        self.views = [np.flatnonzero(a["view_object"] == i) for i in range(len(self.labels))]

    @property
    def token_dim(self) -> int:
        return self.tokens.shape[-1]

    @property
    def latent_dim(self) -> int:
        return self.shape.shape[-1]

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        objects = rng.integers(len(self.labels), size=size)
        views = np.array([rng.choice(self.views[i]) for i in objects])
        t = lambda x: torch.from_numpy(np.ascontiguousarray(x))  # noqa: E731
        return {"tokens": t(self.tokens[views].astype(np.float32)),
                "cover": t(self.cover[views].astype(np.float32)),
                "visible": t(self.visible[views]), "exists": t(self.labels[objects] != NO_ID),
                "labels": t(self.labels[objects]), "shape": t(self.shape[objects]),
                "instance": t(objects.astype(np.int64))}


def export_model(model: HCR, folder: Path, config: TrainConfig, result: TrainResult,
                 data: Path, command: str) -> None:
    """Save the EMA heads and a model card."""
    model = copy.deepcopy(model).cpu().eval()
    model.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    megabytes = (Path(folder) / WEIGHTS_NAME).stat().st_size / 2**20
    write_model_card(folder, "Hierarchical Contrastive Retriever (HCR heads)", [
        f"- Encoder (frozen): `{model.config.encoder}`; 3D side: mean-pooled VAE part latents "
        f"({model.config.latent_dim} channels)",
        f"- Heads: {json.dumps(asdict(model.config))}; {params:,} parameters, "
        f"{megabytes:.1f} MB",
        f"- Data: `{data}` train split renders; {result.step} steps, batch "
        f"{config.batch_size}, lr {config.lr}, EMA {config.ema_decay} (EMA weights shipped)",
        f"- Final validation (EMA, in-batch negatives): {result.val_summary}",
        f"- Retrieval figures: `python -m engine eval retrieval --split test --data {data} "
        f"--retriever {folder} --library LIBRARY`"], command)


def train_retriever(train_features: Path, val_features: Path, run_dir: Path,
                    recipe: RetrieverRecipe, config: TrainConfig, encoder_key: str,
                    device: str = "auto", resume: bool = False,
                    progress: bool = True) -> TrainResult:
    """Train HCR heads on two feature caches; the result's EMA is an HCRTrainer."""
    train_examples = RetrievalExamples(train_features)
    val_examples = RetrievalExamples(val_features)
    model_config = HCRConfig(**{**recipe.model, "token_dim": train_examples.token_dim,
                                "latent_dim": train_examples.latent_dim, "encoder": encoder_key})
    recipes.record_recipe(run_dir, {"model": asdict(model_config), "train": asdict(config)},
                          resume)
    torch.manual_seed(config.seed)
    trainer = HCRTrainer(HCR(model_config))
    return train(trainer, lambda m, b: m.losses(b),
                 lambda rng: train_examples.batch(rng, config.batch_size),
                 lambda rng: val_examples.batch(rng, config.batch_size), config, run_dir,
                 device=device, resume=resume, progress=progress, title="HCR retriever")
