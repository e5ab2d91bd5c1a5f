"""Training the PART VAE (VecSet, one part per example, object frame) and the Geom-Seg VAE
(whole objects, fine-tuned from a part VAE), and exporting the EMA weights as a bundle.

A recipe is data: the network config, how examples are drawn, the loss weight and the loop
settings. `RECIPES` holds the named ones; a JSON file with the same keys works too.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.data.vae_data import CacheOptions, SampleOptions, VAEExamples, build_cache
from engine.models.checkpoint import WEIGHTS_NAME
from engine.models.vecset_vae import (ENCODE_POINTS_KEY, ENCODE_TOKENS_KEY, VecSetVAE,
                                      VecSetVAEConfig)
from engine.training import model_card, recipes
from engine.device import describe_device, resolve_device
from engine.training.loop import BatchFn, LossFn, TrainConfig, TrainResult, train, validate

FP16_TOLERANCE = 0.01  # relative rise of the validation loss that float16 weights may cost
MAX_BUNDLE_MB = 40


@dataclass
class VAERecipe:
    model: dict  # VecSetVAEConfig fields (ignored when starting from --init)
    num_tokens: int = 256  # latents per part (part VAE) or per object (Geom-Seg)
    points: int = 2048  # encoder input points per example
    queries: int = 4096  # supervised occupancy queries per example
    kl_weight: float = 1e-3  # on the KL averaged per latent element
    # Initial bias of the posterior's log-variance: little sampling noise at the start, so
    # the decoder learns to read the latents before the KL spreads them (None: default init).
    logvar_init: float | None = None
    # Std of Gaussian noise added to the sampled latents, uniform in [0, latent_noise] per
    # example: latents a generator made slightly off the encoder's manifold then still
    # decode to clean surfaces instead of specks.
    latent_noise: float = 0.0
    # Train the decoder only: the latent space, and every cache, library and generator made
    # on it, stays valid.
    decoder_only: bool = False
    geomseg: dict = field(default_factory=dict)  # GeomSegConfig overrides
    train: dict = field(default_factory=dict)  # TrainConfig overrides

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{**self.train, **{k: v for k, v in overrides.items() if v is not None}})


RECIPES = {
    # Default shipped part VAE: trains to the reconstruction target on 2 CPU cores.
    "small": VAERecipe(
        model=dict(latent_channels=32, num_attention_heads=4, width_encoder=128,
                   width_decoder=128, num_layers_encoder=1, num_layers_decoder=4,
                   embed_frequency=8),
        num_tokens=128, points=1024, queries=512, kl_weight=1e-3, logvar_init=-4.0,
        train=dict(steps=1500, batch_size=32, lr=1e-3, warmup_steps=100, val_every=100,
                   val_batches=2, checkpoint_every=100)),
    # Decoder-only fine-tune of a trained part VAE (--init): robust to generated latents,
    # twice the supervised queries per part.
    "robust": VAERecipe(
        model={}, num_tokens=128, points=1024, queries=1024, kl_weight=1e-3, latent_noise=0.8,
        decoder_only=True,
        train=dict(steps=1200, batch_size=32, lr=3e-4, warmup_steps=50, val_every=100,
                   val_batches=2, checkpoint_every=100)),
    # For tests and smoke runs: seconds per hundred steps.
    "tiny": VAERecipe(
        model=dict(latent_channels=4, num_attention_heads=2, width_encoder=16, width_decoder=16,
                   num_layers_encoder=1, num_layers_decoder=1, embed_frequency=4),
        num_tokens=16, points=128, queries=256,
        geomseg=dict(seg_width=16, seg_heads=2, seg_layers=1, prompt_layers=1, pos_width=16,
                     train_prompts=8),
        train=dict(batch_size=2, warmup_steps=2, log_every=1, val_every=4, val_batches=1,
                   checkpoint_every=4)),
}


def load_recipe(name_or_path: str) -> VAERecipe:
    return recipes.load_recipe(name_or_path, RECIPES)


def kl_divergence(posterior) -> torch.Tensor:
    """KL(q || N(0, I)) averaged over latent elements."""
    return 0.5 * (posterior.mean.square() + posterior.std.square() - 1.0
                  - posterior.logvar).mean()


def part_vae_losses(vae: VecSetVAE, batch: dict, num_tokens: int, kl_weight: float,
                    latent_noise: float = 0.0) -> dict[str, torch.Tensor]:
    """Occupancy BCE (the decoder's logits are negated: negative inside) + weighted KL."""
    posterior = vae.encode(batch["points"], num_tokens)
    latents = posterior.sample()
    if latent_noise:
        scale = torch.rand(latents.shape[0], 1, 1, device=latents.device) * latent_noise
        latents = latents + scale * torch.randn_like(latents)
    logits = -vae.decode(latents, batch["queries"]).squeeze(-1)
    recon = F.binary_cross_entropy_with_logits(logits, batch["occupancy"])
    kl = kl_divergence(posterior)
    return {"loss": recon + kl_weight * kl, "recon": recon, "kl": kl}


@dataclass
class VAETask:
    """What differs between the two kinds: the model, its loss and its batches."""
    model: nn.Module
    losses: LossFn
    train_batch: BatchFn
    val_batch: BatchFn


def make_task(kind: str, recipe: VAERecipe, train_examples: VAEExamples,
              val_examples: VAEExamples, batch_size: int, init: Path | None) -> VAETask:
    if kind == "geomseg" and init is not None and (Path(init) / "seg").is_dir():
        # A Geom-Seg VAE folder: continue training all of it (the recipe's sizes are unused).
        from engine.models.geomseg_vae import GeomSegVAE

        model = GeomSegVAE.from_pretrained(init).float().train()
        return VAETask(model, lambda m, b: m.losses(b),
                       lambda rng: train_examples.object_batch(rng, batch_size),
                       lambda rng: val_examples.object_batch(rng, batch_size))
    if init is not None:
        vae = VecSetVAE.from_pretrained(init).float().train()
    else:
        vae = VecSetVAE(VecSetVAEConfig(**recipe.model))
        if recipe.logvar_init is not None:
            with torch.no_grad():
                vae.quant.bias[vae.config.latent_channels:] = recipe.logvar_init
    if recipe.decoder_only:
        for module in (vae.embedder, vae.encoder, vae.quant):
            module.requires_grad_(False)
    if kind == "part":
        return VAETask(vae, lambda m, b: part_vae_losses(m, b, recipe.num_tokens, recipe.kl_weight,
                                                         recipe.latent_noise),
                       lambda rng: train_examples.part_batch(rng, batch_size),
                       lambda rng: val_examples.part_batch(rng, batch_size))
    from engine.models.geomseg_vae import GeomSegVAE

    model = GeomSegVAE.from_vecset(vae, num_tokens=recipe.num_tokens, kl_weight=recipe.kl_weight,
                                   **recipe.geomseg)
    return VAETask(model, lambda m, b: m.losses(b),
                   lambda rng: train_examples.object_batch(rng, batch_size),
                   lambda rng: val_examples.object_batch(rng, batch_size))


def weights_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob(WEIGHTS_NAME)) / 2**20


def export_bundle(model: nn.Module, folder: Path, task: VAETask, config: TrainConfig,
                  recipe: VAERecipe) -> dict:
    """Save `model` (the EMA weights) as float16 when that costs at most FP16_TOLERANCE of
    the validation loss (same batches, weights read back from disk), else float32."""
    folder = Path(folder)
    model = copy.deepcopy(model).cpu().eval()
    vae = model if isinstance(model, VecSetVAE) else model.vae
    vae.extra_config.update({ENCODE_TOKENS_KEY: recipe.num_tokens, ENCODE_POINTS_KEY: recipe.points})
    cpu = torch.device("cpu")
    reference = validate(model, task.losses, task.val_batch, config, cpu)
    copy.deepcopy(model).half().save_pretrained(folder)
    reloaded = type(model).from_pretrained(folder)
    rounded = validate(reloaded, task.losses, task.val_batch, config, cpu)
    rise = rounded["loss"] / reference["loss"] - 1.0
    dtype = "float16"
    if rise > FP16_TOLERANCE:
        model.save_pretrained(folder)
        dtype = "float32"
    return {"dtype": dtype, "val_loss_fp32": reference["loss"], "val_loss_fp16": rounded["loss"],
            "fp16_relative_rise": rise, "megabytes": weights_megabytes(folder),
            "parameters": sum(p.numel() for p in model.parameters()),
            "network": asdict(vae.config)}


def write_model_card(folder: Path, kind: str, recipe: VAERecipe, config: TrainConfig,
                     result: TrainResult, export: dict, data: Path, examples: VAEExamples,
                     hardware: str) -> None:
    title = "Part VAE (VecSet)" if kind == "part" else "Geom-Seg VAE"
    model_card.write_model_card(folder, title, [
        f"- Data: `{data}`, {len(examples.objects)} training objects "
        f"({len(examples.parts)} parts), object frame",
        f"- Network: {json.dumps(export['network'])}; {export['parameters']:,} parameters",
        f"- Encoding: {recipe.num_tokens} tokens from {recipe.points} surface points",
        f"- Training: {result.step} steps, batch {config.batch_size}, lr {config.lr}, "
        f"KL weight {recipe.kl_weight}, EMA {config.ema_decay} (EMA weights shipped); "
        f"{result.log.get('seconds', 0.0) / 60:.0f} min wall time on {hardware}",
        f"- Final validation (EMA): {result.val_summary}",
        f"- Weights: {export['dtype']}, {export['megabytes']:.1f} MB (val loss fp32 "
        f"{export['val_loss_fp32']:.5f}, fp16 {export['val_loss_fp16']:.5f})",
        "- Reconstruction metrics: `python -m engine eval vae --split test "
        + (f"--data {data} --model {folder}`" if kind == "part"
           else f"--data {data} --geomseg {folder}`")])


def train_vae(kind: str, data: Path, run_dir: Path, recipe: VAERecipe, config: TrainConfig,
              cache: Path, init: Path | None = None, export: Path | None = None,
              device: str = "auto", resume: bool = False, workers: int = 2,
              progress: bool = True) -> tuple[TrainResult, dict | None]:
    """Cache the data, train, and (when finished and asked) export the EMA model."""
    recipes.record_recipe(run_dir, {"kind": kind, "init": str(init) if init else None,
                                    **asdict(recipe)}, resume)

    sample = SampleOptions(points=recipe.points, queries=recipe.queries)
    examples = {split: VAEExamples(build_cache(data, cache, split, CacheOptions(), workers,
                                               progress), sample)
                for split in ("train", "val")}
    torch.manual_seed(config.seed)  # the initial weights
    task = make_task(kind, recipe, examples["train"], examples["val"], config.batch_size, init)
    result = train(task.model, task.losses, task.train_batch, task.val_batch, config, run_dir,
                   device=device, resume=resume, progress=progress, title=f"{kind} VAE")
    exported = None
    if export is not None and result.finished:
        exported = export_bundle(result.ema, export, task, config, recipe)
        write_model_card(export, kind, recipe, config, result, exported, data, examples["train"],
                         describe_device(resolve_device(device)))
    return result, exported
