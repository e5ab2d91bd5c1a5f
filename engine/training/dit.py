"""Training the PartRAG generator: the dual-lane DiT with retrieval-augmented context.

Stage 1: flow matching with retrieval (PartRAG §3.4): each object's context is
Concat(query tokens, exemplar tokens ...) with top-k exemplars from the training bank (its
own object excluded), k drawn per batch in 0..max_k so one model serves every k; 10% of
objects get a zero context (classifier-free guidance). Stage 2 adds the Hierarchical
Contrastive Retrieval loss, L = L_flow + L_HCR (λ_part = λ_obj = 0.03, engine/retrieval/hcr.py),
training the retriever's heads beside the generator.

The exported bundle is a models/partrag folder: transformer/, scheduler/, rag/ (projection,
exemplar bank, retrieval settings), vae/ (copy of the part VAE), hcr/ (stage 2), model card.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.models.dual_lane_dit import DualLaneDiT, DualLaneDiTConfig
from engine.models.latent_scale import LatentScale
from engine.models.vecset_vae import VecSetVAE
from engine.models.flow_sampler import GUIDANCE_KEY, FlowSampler
from engine.models.rag_context import (RetrievalContext, RetrievalContextConfig, fuse_context,
                                       per_part_rows)
from engine.pipelines.partrag import RETRIEVAL_SETTINGS, PartRAGPipeline
from engine.training import dit_data, model_card, recipes
from engine.training.flow_matching import NUM_TRAIN_TIMESTEPS, flow_target, noisy_latents, per_row
from engine.device import describe_device, resolve_device
from engine.training.loop import TrainConfig, TrainResult, train



@dataclass
class DiTRecipe:
    model: dict  # DualLaneDiTConfig overrides (in_channels, cross_attention_dim come from data)
    bank: dict = field(default_factory=dict)  # dit_data.BankOptions overrides
    max_k: int = 5  # exemplars per object in training: k uniform in 0..max_k
    condition_dropout: float = 0.1
    paths: dict = field(default_factory=dict)  # dit_data.PathOptions overrides
    # Guidance the bundle recommends (its scheduler/ default_guidance; None: the pipeline's
    # reference 7), chosen by measuring the trained model (docs/results.md).
    guidance: float | None = None
    hcr: dict = field(default_factory=dict)  # HCRConfig overrides (stage 2)
    train: dict = field(default_factory=dict)  # TrainConfig overrides

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{**self.train, **{k: v for k, v in overrides.items() if v is not None}})


RECIPES = {
    # Default shipped generator: about an hour on 2 CPU cores with the shipped part VAE.
    "small": DiTRecipe(
        model=dict(num_attention_heads=4, width=256, num_layers=6, max_num_parts=8,
                   global_attn_block_ids=[0, 2, 4]),
        bank=dict(size=512, image_grid=2, tokens_per_part=4, max_parts=8),
        paths=dict(bridge_fraction=0.5, bridge_strengths=(0.3, 0.7)), guidance=1.0,
        train=dict(steps=1200, batch_size=6, lr=3e-4, warmup_steps=60, weight_decay=0.01,
                   betas=(0.9, 0.999), ema_decay=0.999, val_every=100, val_batches=2,
                   checkpoint_every=50)),
    # Tests and smoke runs.
    "tiny": DiTRecipe(
        model=dict(num_attention_heads=2, width=16, num_layers=3, max_num_parts=8,
                   global_attn_block_ids=[0, 2]),
        bank=dict(size=64, image_grid=1, tokens_per_part=2, max_parts=8),
        max_k=2, hcr=dict(embed_dim=8, hidden_dim=16, part_queries=8, attention_dim=8,
                          queue_size=16),
        train=dict(steps=4, batch_size=2, warmup_steps=2, log_every=1, val_every=2,
                   val_batches=1, checkpoint_every=2)),
}


def load_recipe(name_or_path: str) -> DiTRecipe:
    return recipes.load_recipe(name_or_path, RECIPES)


class PartRAGModel(nn.Module):
    """What is trained: the DiT, the retrieved-latent projection and, in stage 2, the HCR
    heads with their momentum copy and queues."""

    def __init__(self, transformer: DualLaneDiT, rag: RetrievalContext, hcr: nn.Module | None = None):
        super().__init__()
        self.transformer, self.rag = transformer, rag
        self.hcr = hcr

    def context(self, batch: dict) -> torch.Tensor:
        """Fused context per object, zeroed where the condition was dropped."""
        k = batch["exemplar_images"].shape[1]
        context = fuse_context(batch["query"], batch["exemplar_images"] if k else None,
                               batch["exemplar_latents"] if k else None, self.rag)
        return context * (~batch["dropped"]).to(context.dtype)[:, None, None]


def dit_losses(model: PartRAGModel, batch: dict, condition_dropout: float,
               sigma: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Rectified-flow loss (+ L_HCR in stage 2). The batch's `drop` draws decide dropout;
    `sigma` (objects,) replaces the batch's noise levels and turns its bridge paths off.
    A bridge path's noise ε' = ε + (1-σ0)/σ0·(start - x0) puts x_σ0 = (1-σ0)·start + σ0·ε,
    exactly where retrieval-initialised sampling starts, on the straight line to x0."""
    counts = batch["counts"]
    x0 = batch["latents"]
    batch = {**batch, "dropped": batch["drop"] < condition_dropout}
    noise = torch.randn_like(x0)
    if sigma is None:
        sigma = batch["sigma"]
        s0 = per_row(batch["start_sigma"].to(x0.device), counts)[:, None, None]
        bridged = per_row(batch["bridge"].to(x0.device), counts)[:, None, None]
        noise = noise + torch.where(bridged, (batch["start"] - x0) * (1.0 - s0) / s0, 0.0)
    sigma = per_row(sigma.to(x0.device), counts)
    context = per_part_rows(model.context(batch), counts)
    v = model.transformer(noisy_latents(x0, noise, sigma), sigma * NUM_TRAIN_TIMESTEPS,
                          context, counts)
    flow = F.mse_loss(v.float(), flow_target(x0, noise).float())
    if model.hcr is None:
        return {"loss": flow, "flow": flow}
    hcr = model.hcr.losses({"tokens": batch["query"], **{k: batch[k] for k in (
        "cover", "visible", "exists", "labels", "shape", "instance")}})
    return {"loss": flow + hcr["loss"], "flow": flow, "hcr": hcr["hcr"]}


def load_bundle_model(folder: Path) -> PartRAGModel:
    """A bundle's transformer and retrieval projection as one float32 module."""
    return PartRAGModel(DualLaneDiT.from_pretrained(Path(folder) / "transformer").float(),
                        RetrievalContext.from_pretrained(Path(folder) / "rag").float())


def make_model(recipe: DiTRecipe, latent_channels: int, token_dim: int, stage: int,
               init: Path | None) -> PartRAGModel:
    if init is not None:
        loaded = load_bundle_model(init).train()
        transformer, rag = loaded.transformer, loaded.rag
    else:
        config = DualLaneDiTConfig(**{**recipe.model, "in_channels": latent_channels,
                                      "cross_attention_dim": token_dim})
        transformer = DualLaneDiT(config)
        rag = RetrievalContext(RetrievalContextConfig(latent_channels, token_dim))
    hcr = None
    if stage == 2:
        from engine.retrieval.hcr import HCR, HCRConfig, HCRTrainer

        hcr = HCRTrainer(HCR(HCRConfig(**{**recipe.hcr, "token_dim": token_dim,
                                          "latent_dim": latent_channels})))
    return PartRAGModel(transformer, rag, hcr)


def export_bundle(model: PartRAGModel, folder: Path, vae_folder: Path, bank,
                  bank_options: dit_data.BankOptions, max_k: int, scale: LatentScale,
                  guidance: float | None = None) -> dict:
    """Write the bundle through the pipeline's save_pretrained; the latent standardisation
    the DiT was trained with goes into vae/config.json, the guidance it samples best with
    into scheduler/, the HCR heads of stage 2 into hcr/."""
    folder = Path(folder)
    model = copy.deepcopy(model).cpu().eval()
    vae = VecSetVAE.from_pretrained(vae_folder)
    vae.extra_config.update(scale.config())
    sampler = FlowSampler(**({} if guidance is None else {GUIDANCE_KEY: guidance}))
    PartRAGPipeline(model.transformer, sampler, vae, bank_options.encoder, model.rag, bank,
                    {**asdict(bank_options), "max_k": max_k}).save_pretrained(folder)
    if model.hcr is not None:
        model.hcr.model.save_pretrained(folder / "hcr")
    megabytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    return {"megabytes": megabytes,
            "parameters": sum(p.numel() for p in model.transformer.parameters())
            + sum(p.numel() for p in model.rag.parameters()),
            "network": asdict(model.transformer.config)}


def write_model_card(folder: Path, stage: int, recipe: DiTRecipe, config: TrainConfig,
                     result: TrainResult, export: dict, data: Path, vae: Path,
                     train_objects: int, bank_size: int, hardware: str) -> None:
    model_card.write_model_card(folder, "PartRAG generator (dual-lane DiT + retrieval)", [
        f"- Data: `{data}`, {train_objects} training objects; part VAE `{vae}` (copied to vae/)",
        f"- Network: {json.dumps(export['network'])}; {export['parameters']:,} parameters",
        f"- Retrieval: bank of {bank_size} training assets (rag/bank.npz), settings in "
        f"rag/{RETRIEVAL_SETTINGS}; trained with k uniform in 0..{recipe.max_k}, "
        f"{recipe.condition_dropout:.0%} condition dropout",
        f"- Training: stage {stage}{' (+ HCR loss)' if stage == 2 else ''}, {result.step} steps, "
        f"batch {config.batch_size}, lr {config.lr}, EMA {config.ema_decay} (EMA weights shipped); "
        f"{result.log.get('seconds', 0.0) / 60:.0f} min wall time on {hardware}",
        f"- Final validation (EMA): {result.val_summary}",
        f"- Size: {export['megabytes']:.1f} MB",
        f"- Evaluate: `python -m engine eval generation --split test --data {data} --model {folder}`"])


def training_scale(train_objects: list[dit_data.CachedObject], init: Path | None) -> LatentScale:
    """The standardisation a run trains under: the --init bundle's (its DiT learned it), else
    fitted on the training latents."""
    if init is not None:
        inherited = LatentScale.of(VecSetVAE.from_pretrained(Path(init) / "vae"))
        if not inherited.identity:
            return inherited
    return LatentScale.fit(np.concatenate([o.latents.reshape(-1, o.latents.shape[-1])
                                           for o in train_objects]))


def train_dit(data: Path, vae_folder: Path, run_dir: Path, recipe: DiTRecipe, config: TrainConfig,
              cache: Path, stage: int = 1, init: Path | None = None, export: Path | None = None,
              device: str = "auto", resume: bool = False, limit: int | None = None,
              progress: bool = True) -> tuple[TrainResult, dict | None]:
    """Cache latents and tokens, train, and (when finished and asked) export the bundle."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    recipes.record_recipe(run_dir, {"stage": stage, "init": str(init) if init else None,
                                    "vae": str(vae_folder), **asdict(recipe)}, resume)

    bank_options = dit_data.BankOptions(**recipe.bank)
    objects = {split: dit_data.load_cached(dit_data.build_latent_cache(
        data, cache, split, vae_folder, bank_options.encoder, limit=limit, progress=progress))
        for split in ("train", "val")}
    bank = dit_data.build_bank(objects["train"], bank_options)
    labels = dit_data.label_vocabulary(objects["train"])
    scale = training_scale(objects["train"], init)
    library = {o.name: o.latents.astype(np.float32) for o in objects["train"]}
    paths = dit_data.PathOptions(**recipe.paths)
    examples = {split: dit_data.DiTExamples(objs, bank, recipe.max_k, labels, scale, paths, library)
                for split, objs in objects.items()}
    first = objects["train"][0]
    torch.manual_seed(config.seed)  # the initial weights
    model = make_model(recipe, first.latents.shape[-1], first.tokens.shape[-1], stage, init)
    losses = lambda m, b: dit_losses(m, b, recipe.condition_dropout)
    result = train(model, losses, lambda rng: examples["train"].batch(rng, config.batch_size),
                   lambda rng: examples["val"].batch(rng, config.batch_size), config, run_dir,
                   device=device, resume=resume, progress=progress, title=f"PartRAG DiT stage {stage}")
    exported = None
    if export is not None and result.finished:
        exported = export_bundle(result.ema, export, vae_folder, bank, bank_options, recipe.max_k,
                                 scale, recipe.guidance)
        write_model_card(export, stage, recipe, config, result, exported, data, vae_folder,
                         len(objects["train"]), len(bank), describe_device(resolve_device(device)))
    return result, exported
