"""Training UniPart's two generators (UniPart §3.2-3.3) on the UniPart cache (unipart_data.py).

Both are the dual-lane DiT, one code path for every size:
- **whole-level DiT**: one lane over the object's Geom-Seg latent Z (L tokens), conditioned
  on the image tokens; rectified flow (Eq. 3) with 10 % condition dropout for guidance.
- **dual-space part DiT**: two lanes per part, X_gcs and X_ncs. The dual-lane DiT's part
  embedding is the learnable space embedding e_gcs / e_ncs added before the transformer, its
  local blocks attend within one space (Eq. 4) and its global blocks over both (Eq. 5). The
  context is the image tokens followed by the whole-object latents, each with a channel
  saying whether it belongs to part i: that carries Z and X_i (X_i "padded to L" is Z with
  the other latents marked out) in L tokens, projected to the context width
  (`SegmentContext`). Z is the ground truth's in training and the whole DiT's at inference.

Latents are standardised per space (LatentScale): Z, X_gcs and X_ncs each with their own
per-channel statistics from the training split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.models.dual_lane_dit import DualLaneDiT, DualLaneDiTConfig
from engine.models.rag_context import per_part_rows
from engine.models.unipart_context import (SCALES_NAME, SegmentContext, SegmentContextConfig,
                                           Scales)
from engine.training import recipes
from engine.training.flow_matching import (NUM_TRAIN_TIMESTEPS, flow_target,
                                           logit_normal_sigmas, noisy_latents, per_row)
from engine.training.loop import TrainConfig, TrainResult, train
from engine.training.unipart_data import UniPartObject

STAGES = ("whole", "part")
SPACES = ("gcs", "ncs")  # the part DiT's lanes, in order


@dataclass
class UniPartRecipe:
    model: dict  # DualLaneDiTConfig overrides (in_channels, cross_attention_dim from the data)
    condition_dropout: float = 0.1
    guidance: float | None = None  # what the bundle's sampler declares (part stage's export)
    train: dict = field(default_factory=dict)  # TrainConfig overrides

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{**self.train, **{k: v for k, v in overrides.items() if v is not None}})


def small_recipe(stage: str, global_blocks: list[int]) -> UniPartRecipe:
    """CPU defaults, ~15 and ~20 min on 2 cores; the part DiT is narrower so the bundle with
    both VAEs stays under 40 MB."""
    return UniPartRecipe(
        model=dict(num_attention_heads=4, width=256 if stage == "whole" else 192, num_layers=6,
                   global_attn_block_ids=global_blocks, max_num_parts=1 if stage == "whole" else 2),
        train=dict(steps=1500, batch_size=8, lr=3e-4, warmup_steps=60, weight_decay=0.01,
                   betas=(0.9, 0.999), ema_decay=0.999, val_every=100, val_batches=2,
                   checkpoint_every=50))


RECIPES = {
    "small": {stage: small_recipe(stage, [0, 2, 4]) for stage in STAGES},
    # The ablation of Eq. 5: GCS and NCS never attend to each other (only to the context).
    "no-global": {stage: small_recipe(stage, []) for stage in STAGES},
    # Tests and smoke runs.
    "tiny": {stage: UniPartRecipe(
        model=dict(num_attention_heads=2, width=16, num_layers=3, global_attn_block_ids=[0, 2],
                   max_num_parts=1 if stage == "whole" else 2),
        train=dict(steps=4, batch_size=2, warmup_steps=2, log_every=1, val_every=2,
                   val_batches=1, checkpoint_every=2)) for stage in STAGES},
}


def load_recipe(name_or_path: str, stage: str) -> UniPartRecipe:
    """A stage's recipe by name (small, tiny) or from a JSON file of UniPartRecipe's keys."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    return recipes.load_recipe(name_or_path, {name: r[stage] for name, r in RECIPES.items()})


class WholeModel(nn.Module):
    """What the whole stage trains: the DiT over Z."""

    def __init__(self, transformer: DualLaneDiT):
        super().__init__()
        self.transformer = transformer

    def context(self, batch: dict) -> torch.Tensor:
        return batch["query"]


class PartModel(nn.Module):
    """What the part stage trains: the dual-space DiT and the segment context projection."""

    def __init__(self, transformer: DualLaneDiT, segment: SegmentContext):
        super().__init__()
        self.transformer, self.segment = transformer, segment

    def context(self, batch: dict) -> torch.Tensor:
        return torch.cat([batch["query"], self.segment(batch["segment"])], dim=1)


def fit_scales(objects: list[UniPartObject]) -> Scales:
    """Each space's statistics over the training objects."""
    return Scales.fit(np.stack([o.z for o in objects]), *(
        np.concatenate([getattr(o, space) for o in objects]) for space in SPACES))


class UniPartExamples:
    """Batches for either stage; a pure function of the rng."""

    def __init__(self, objects: list[UniPartObject], scales: Scales):
        self.objects, self.scales = objects, scales
        self.parts = [(i, k) for i, o in enumerate(objects) for k in range(o.num_parts)]

    def _query(self, rng: np.random.Generator, objects: list[UniPartObject]) -> torch.Tensor:
        return torch.stack([torch.from_numpy(
            o.tokens[int(rng.integers(len(o.tokens)))].astype(np.float32)) for o in objects])

    def whole_batch(self, rng: np.random.Generator, size: int) -> dict:
        """latents (B, L, d) standardised Z, counts (B,) ones, query (B, L_img, Cc), sigma,
        drop."""
        objects = [self.objects[i] for i in rng.integers(len(self.objects), size=size)]
        z = torch.from_numpy(np.stack([o.z for o in objects]).astype(np.float32))
        return {"latents": self.scales.z.normalise(z), "counts": torch.ones(size, dtype=torch.long),
                "query": self._query(rng, objects),
                "sigma": torch.from_numpy(logit_normal_sigmas(rng, size)).float(),
                "drop": torch.from_numpy(rng.random(size))}

    def part_batch(self, rng: np.random.Generator, size: int) -> dict:
        """latents (2B, L, d): each picked part's [X_gcs, X_ncs] standardised, counts (B,)
        twos, query, segment (B, L, d + 1) the standardised Z with part i's flag, sigma, drop."""
        picks = [self.parts[j] for j in rng.integers(len(self.parts), size=size)]
        objects = [self.objects[i] for i, _ in picks]
        rows = []
        for (i, k), o in zip(picks, objects):
            rows += [self.scales.gcs.normalise(torch.from_numpy(o.gcs[k].astype(np.float32))),
                     self.scales.ncs.normalise(torch.from_numpy(o.ncs[k].astype(np.float32)))]
        z = self.scales.z.normalise(torch.from_numpy(
            np.stack([o.z for o in objects]).astype(np.float32)))
        flags = torch.from_numpy(np.stack([o.z_parts == k for (_, k), o in zip(picks, objects)]))
        return {"latents": torch.stack(rows), "counts": torch.full((size,), 2),
                "query": self._query(rng, objects),
                "segment": torch.cat([z, flags[..., None].float()], dim=-1),
                "sigma": torch.from_numpy(logit_normal_sigmas(rng, size)).float(),
                "drop": torch.from_numpy(rng.random(size))}


def flow_losses(model, batch: dict, condition_dropout: float) -> dict[str, torch.Tensor]:
    """Rectified flow (Eq. 3) with one σ per object (or part: both spaces share it), the
    context zeroed where the condition is dropped (classifier-free guidance)."""
    counts, x0 = batch["counts"], batch["latents"]
    noise = torch.randn_like(x0)
    sigma = per_row(batch["sigma"].to(x0.device), counts)
    keep = (batch["drop"] >= condition_dropout).to(x0.dtype)
    context = model.context(batch) * keep[:, None, None]
    v = model.transformer(noisy_latents(x0, noise, sigma), sigma * NUM_TRAIN_TIMESTEPS,
                          per_part_rows(context, counts), counts)
    flow = F.mse_loss(v.float(), flow_target(x0, noise).float())
    return {"loss": flow, "flow": flow}


def make_model(stage: str, recipe: UniPartRecipe, latent_channels: int, token_dim: int):
    config = DualLaneDiTConfig(**{**recipe.model, "in_channels": latent_channels,
                                  "cross_attention_dim": token_dim})
    transformer = DualLaneDiT(config)
    if stage == "whole":
        return WholeModel(transformer)
    return PartModel(transformer, SegmentContext(SegmentContextConfig(latent_channels, token_dim)))


def train_unipart(stage: str, train_objects: list[UniPartObject],
                  val_objects: list[UniPartObject], run_dir: Path, recipe: UniPartRecipe,
                  config: TrainConfig, device: str = "auto", resume: bool = False,
                  progress: bool = True) -> tuple[TrainResult, Scales]:
    """Train one stage's DiT; returns the run's result (EMA weights in `.ema`) and the
    latent scales it trained under."""
    recipes.record_recipe(run_dir, {"stage": stage, **asdict(recipe)}, resume)
    scales = fit_scales(train_objects)
    examples = {name: UniPartExamples(objs, scales)
                for name, objs in (("train", train_objects), ("val", val_objects))}
    first = train_objects[0]
    torch.manual_seed(config.seed)  # the initial weights
    model = make_model(stage, recipe, first.z.shape[-1], first.tokens.shape[-1])
    batch = "whole_batch" if stage == "whole" else "part_batch"
    result = train(model, lambda m, b: flow_losses(m, b, recipe.condition_dropout),
                   lambda rng: getattr(examples["train"], batch)(rng, config.batch_size),
                   lambda rng: getattr(examples["val"], batch)(rng, config.batch_size),
                   config, run_dir, device=device, resume=resume, progress=progress,
                   title=f"UniPart {stage} DiT")
    return result, scales



TRAINING_NAME = "training.json"  # how a stage was trained, for the bundle's model card


def stage_record(stage: str, result: TrainResult, config: TrainConfig, objects: int,
                 hardware: str) -> dict:
    """What the model card says of one stage's training."""
    from engine.training.model_card import retrain_command

    return {"stage": stage, "steps": result.step, "batch": config.batch_size, "lr": config.lr,
            "objects": objects, "minutes": result.log.get("seconds", 0.0) / 60,
            "validation": result.val_summary, "hardware": hardware,
            "command": retrain_command()}


def export_stage(model, scales: Scales, folder: Path, record: dict) -> dict:
    """The whole stage's DiT in float16 (DIR/transformer/, a public-layout dual-lane DiT
    folder), the latent scales it was trained under and its training record."""
    import copy

    from engine.files import write_json_atomic

    folder = Path(folder)
    model = copy.deepcopy(model).cpu().eval().half()
    model.transformer.save_pretrained(folder / "transformer")
    scales.save(folder / SCALES_NAME)
    write_json_atomic(folder / TRAINING_NAME, record)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "megabytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20}


def export_bundle(whole: Path, model: PartModel, scales: Scales, geomseg: Path,
                  part_vae: Path, folder: Path, record: dict,
                  guidance: float | None = None) -> dict:
    """The whole UniPart bundle (engine/pipelines/unipart.py's layout) from the whole stage's
    export and the trained part stage, with its model card."""
    from engine.models.flow_sampler import GUIDANCE_KEY, FlowSampler
    from engine.models.geomseg_vae import GeomSegVAE
    from engine.models.vecset_vae import VecSetVAE
    from engine.pipelines.unipart import UniPartPipeline

    sampler = FlowSampler(**({} if guidance is None else {GUIDANCE_KEY: guidance}))
    UniPartPipeline(DualLaneDiT.from_pretrained(Path(whole) / "transformer"), model.transformer,
                    model.segment, GeomSegVAE.from_pretrained(geomseg),
                    VecSetVAE.from_pretrained(part_vae), sampler, scales).save_pretrained(folder)
    megabytes = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20
    write_bundle_card(folder, json.loads((Path(whole) / TRAINING_NAME).read_text()), record,
                      geomseg, part_vae, megabytes)
    return {"megabytes": megabytes}


def write_bundle_card(folder: Path, whole: dict, part: dict, geomseg: Path, part_vae: Path,
                      megabytes: float) -> None:
    from engine.training.model_card import shown_path, write_model_card

    stage = lambda r: (f"{r['steps']} steps, batch {r['batch']}, lr {r['lr']}, "
                       f"{r['minutes']:.0f} min on {r['hardware']}; final validation (EMA) "
                       f"{r['validation']}")
    write_model_card(folder, "UniPart generator (whole-level DiT + dual-space part DiT)", [
        f"- Data: {part['objects']} training objects; whole objects encoded by the Geom-Seg "
        f"VAE `{shown_path(geomseg)}` (its segmentation and anchor decoders copied to "
        f"segmenter/), parts in both spaces by the part VAE `{shown_path(part_vae)}` (copied "
        f"to vae/)",
        f"- Whole-level DiT (whole/): {stage(whole)}; trained by `{whole['command']}`",
        f"- Dual-space part DiT (part/): {stage(part)}",
        f"- Size: {megabytes:.1f} MB (float16)",
        "- Evaluate: `python -m engine eval unipart --split test` (results: docs/results.md)"],
        part["command"])


def train_unipart_command(stage: str, data: Path, run_dir: Path, recipe: UniPartRecipe,
                          config: TrainConfig, *, geomseg: Path, part_vae: Path, cache: Path,
                          dit_cache: Path, whole: Path | None = None, export: Path | None = None,
                          device: str = "auto", resume: bool = False, limit: int | None = None,
                          progress: bool = True) -> tuple[TrainResult, dict | None]:
    """Cache (image tokens in the DiT cache, latents in the UniPart cache), train one stage,
    and export it when finished and asked: the whole stage's networks, or with the part
    stage the whole bundle (the whole stage's export given as `whole`)."""
    from engine.training.unipart_data import cached_split

    if export is not None and stage == "part" and whole is None:
        raise ValueError("the part stage exports the whole bundle: pass the whole stage's "
                         "export (--whole DIR)")
    objects = {split: cached_split(data, split, geomseg, part_vae, cache, dit_cache, limit,
                                   progress) for split in ("train", "val")}
    result, scales = train_unipart(stage, objects["train"], objects["val"], run_dir, recipe,
                                   config, device, resume, progress)
    exported = None
    if export is not None and result.finished:
        from engine.device import describe_device, resolve_device

        record = stage_record(stage, result, config, len(objects["train"]),
                              describe_device(resolve_device(device)))
        exported = (export_stage(result.ema, scales, export, record) if stage == "whole" else
                    export_bundle(whole, result.ema, scales, geomseg, part_vae, export, record,
                                  recipe.guidance))
    return result, exported
