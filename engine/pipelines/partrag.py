"""PartRAG: one reference image -> N part meshes, each in its local frame with a rigid
transform, a label and a mesh id (PartRAG §3.1, §3.3-3.4 on PartCrafter's dual-lane DiT).

    image -> RGBA (background removed unless told not to) -> crop/pad (image_prep)
          -> encoder tokens + search key -> top-k exemplars from the bank
          -> context = Concat(query tokens, exemplar image tokens, projected exemplar latents)
          -> N part latents jointly denoised (rectified flow, zero-context guidance)
          -> each part decoded and extracted -> local mesh + transform + label + mesh id

With a part library beside the bank (the bank made from it, library_bank.py) and k > 0,
sampling starts from the retrieved assets' own part latents noised to σ = `strength`
instead of pure noise (retrieval-initialised sampling: PartRAG's editor initialises from
retrieved latents the same way; strength 1 is the paper's generation from noise). Labels
come from the exemplar part a latent started from, otherwise from the nearest retrieved part
(mean latents); with k = 0 the top-3 assets are still looked up for labels only, the context
stays the query's alone. Deterministic for a seed on a given device. `progress(stage,
fraction)` gets the overall fraction in [0, 1]; `check_cancelled()` runs between steps and
stops the run by raising.

A public PartCrafter folder (no rag/; image_encoder_dinov2/ and feature_extractor_dinov2/
instead) runs the same path with its own DINOv2 conditioning (every last_hidden_state token,
CLS included) and k = 0 only: no retrieval, and labels are UNLABELLED.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.models.dual_lane_dit import DualLaneDiT
from engine.models.flow_sampler import GUIDANCE_KEY, FlowSampler, initial_noise
from engine.models.latent_scale import LatentScale
from engine.models.rag_context import RetrievalContext, fuse_context, per_part_rows
from bridge.errors import RequestRefused
from bridge.protocol import Part
from engine.models.vecset_vae import VecSetVAE
from engine.device import Stopwatch
from engine.files import write_json_atomic
from engine.pipelines.bundle import (CLASS_KEY, MODEL_INDEX, read_model_index,
                                    write_model_index)
from engine.pipelines.decode import ExtractSettings, decode_parts
from engine.render.image_prep import frame_object, to_rgba
from engine.retrieval import conditioning
from engine.retrieval.exemplars import BANK_NAME, ExemplarBank, Hit
from engine.retrieval.library import PartLibrary
from engine.retrieval.library_bank import library_fingerprint

# 12 Euler steps (the reference takes 50) keep an 8-part object near 10 s on 2 CPU cores.
DEFAULT_TOP_K, DEFAULT_STEPS = 3, 12
DEFAULT_PARTS = 4  # a request that leaves the part count to a pipeline without a bank
# Guidance: the bundle's own (scheduler_config.json `default_guidance`, written by training's
# export), else the public checkpoints' 7. The shipped CPU-trained generator declares 1: with
# stronger guidance its samples overshoot the latents' scale (docs/results.md).
REFERENCE_GUIDANCE = 7.0
DEFAULT_STRENGTH = 0.5  # start σ of retrieval-initialised sampling (docs/results.md)
LABEL_NEIGHBOURS = 3  # assets whose parts label the output when k = 0
RETRIEVAL_SETTINGS = "retrieval.json"
COMPONENTS = {"transformer": ("engine", "DualLaneDiT"), "scheduler": ("engine", "FlowSampler"),
              "vae": ("engine", "VecSetVAE"), "rag": ("engine", "RetrievalContext")}
INSTALLED = object()  # from_pretrained(library=...): the library installed beside the bundle
UNLABELLED = "object_part"  # label without any bank to take labels from
STAGES = {"encode": (0.0, 0.05), "retrieve": (0.05, 0.1), "denoise": (0.1, 0.7),
          "decode": (0.7, 1.0)}  # share of the overall progress


def folder_conditioning(folder: Path) -> tuple[str, dict]:
    """What a model folder declares it was trained on: (image encoder spec, retrieval
    settings). A PartRAG bundle names its encoder in rag/retrieval.json; a public PartCrafter
    folder has no retrieval settings and is conditioned on its own image_encoder_dinov2/."""
    path = folder / "rag" / RETRIEVAL_SETTINGS
    if path.is_file():
        settings = json.loads(path.read_text())
        return settings["encoder"], settings
    if not (folder / conditioning.PARTCRAFTER_ENCODER).is_dir():
        raise FileNotFoundError(
            f"{folder} has neither rag/{RETRIEVAL_SETTINGS} (a PartRAG bundle names its image "
            f"encoder there) nor {conditioning.PARTCRAFTER_ENCODER}/ (a PartCrafter folder's "
            f"DINOv2 image encoder): nothing to condition on the image with")
    return conditioning.partcrafter_spec(folder), {}


def installed_library(bundle: str | Path) -> Path | None:
    """The part library installed beside a bundle (models/library next to models/partrag),
    or None."""
    folder = Path(bundle).parent / "library"
    return folder if (folder / "library.json").is_file() else None


@dataclass
class Generation:
    parts: list[Part]  # each with the latent it was decoded from
    reports: list[dict]  # per part: empty (a placeholder cube), pieces, debris_removed, raw_debris
    retrieved: list[dict]  # asset_id + score of the exemplars in the context
    timings: dict[str, float]  # seconds per stage and in total
    params: dict = field(default_factory=dict)  # what was asked (steps, guidance, seed, top_k, model)
    reference: np.ndarray | None = None  # the input image as given, kept so the asset can be edited
    segmentation: np.ndarray | None = None  # UniPart: (L, 4) Ẑ's anchors (xyz) and part index


class PartRAGPipeline:
    """The networks of a bundle (transformer/, scheduler/, vae/, rag/ with its exemplar bank)
    or of a public PartCrafter folder, and optionally the part library the bank was made
    from, loaded once; call it per image. Every request default is resolved here."""

    class_names = ("PartRAGPipeline", "PartCrafterPipeline")  # model_index.json it loads
    operation = "generate"  # the bridge request it serves

    def __init__(self, transformer: DualLaneDiT, sampler: FlowSampler, vae: VecSetVAE,
                 encoder_spec: str, rag: RetrievalContext | None = None,
                 bank: ExemplarBank | None = None, settings: dict | None = None, *,
                 device: str | torch.device = "cpu", extract: ExtractSettings | None = None,
                 library: PartLibrary | None = None, name: str = "this bundle"):
        """`settings`: rag/retrieval.json (the encoder, bank options, the library's
        fingerprint). `name` is how errors refer to the bundle."""
        self.device, self.name = torch.device(device), name
        self.encoder_spec, self.settings = encoder_spec, settings or {}
        self.transformer = transformer.float().to(self.device).eval()
        self.sampler = sampler
        self.vae = vae.float().to(self.device).eval()
        self.tokens = self.vae.encode_tokens
        self.scale = LatentScale.of(self.vae)  # what the DiT sees: standardised latents
        self.rag = rag.float().to(self.device).eval() if rag is not None else None
        self.bank = bank
        self.library = library
        if library is not None and (
                bank is None or self.settings.get("library") != library_fingerprint(library)):
            raise ValueError(f"{name}'s exemplar bank was not made from the library "
                             f"{library.folder}; run: python -m engine library bank --library "
                             f"{library.folder} --model {name}")
        self.encoder = conditioning.load_encoder(encoder_spec, self.device)
        width = self.transformer.config.cross_attention_dim
        if self.encoder.token_dim != width:
            raise ValueError(f"{encoder_spec} gives {self.encoder.token_dim}-channel tokens but "
                             f"the transformer's cross_attention_dim is {width}")
        self.extract = extract or ExtractSettings()

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu", *,
                        extract: ExtractSettings | None = None,
                        library: str | Path | None | object = INSTALLED) -> PartRAGPipeline:
        """Load a bundle folder; `library`: a part library folder, None for none, or by
        default the one installed beside the bundle (models/library next to models/partrag)."""
        folder = Path(folder)
        if (folder / MODEL_INDEX).is_file():  # public folders may come without one
            index = read_model_index(folder)
            if index[CLASS_KEY] not in cls.class_names:
                raise ValueError(f"{folder} holds a {index[CLASS_KEY]}, not one of "
                                 f"{', '.join(cls.class_names)}")
        spec, settings = folder_conditioning(folder)
        bank_path = folder / "rag" / BANK_NAME
        if library is INSTALLED:
            library = installed_library(folder)
        return cls(DualLaneDiT.from_pretrained(folder / "transformer"),
                   FlowSampler.from_pretrained(folder / "scheduler"),
                   VecSetVAE.from_pretrained(folder / "vae"), spec,
                   RetrievalContext.beside(folder),
                   ExemplarBank.load(bank_path) if bank_path.is_file() else None, settings,
                   device=device, extract=extract,
                   library=PartLibrary.load(library) if library is not None else None,
                   name=str(folder))

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the bundle: model_index.json and one folder per component, the DiT and VAE
        weights in float16 (they load into float32 networks), rag/ with the exemplar bank
        and retrieval.json. A PartCrafter folder (no rag/) is copied, not saved."""
        if self.rag is None or self.bank is None:
            raise ValueError("save_pretrained writes PartRAG bundles (with rag/ and a bank); "
                             "copy a PartCrafter folder instead")
        folder = Path(folder)
        copy.deepcopy(self.transformer).cpu().half().save_pretrained(folder / "transformer")
        self.sampler.save_pretrained(folder / "scheduler")
        copy.deepcopy(self.vae).cpu().half().save_pretrained(folder / "vae")
        copy.deepcopy(self.rag).cpu().save_pretrained(folder / "rag")
        self.bank.save(folder / "rag" / BANK_NAME)
        write_json_atomic(folder / "rag" / RETRIEVAL_SETTINGS, self.settings)
        write_model_index(folder, "PartRAGPipeline", COMPONENTS)

    @property
    def max_parts(self) -> int:
        return self.transformer.config.max_num_parts

    @property
    def default_guidance(self) -> float:
        return float(self.sampler.extra_config.get(GUIDANCE_KEY, REFERENCE_GUIDANCE))

    @property
    def default_top_k(self) -> int:
        """DEFAULT_TOP_K when the folder can retrieve, else 0 (a public PartCrafter folder)."""
        return DEFAULT_TOP_K if self.rag is not None and self.bank is not None else 0

    def check_request(self, parts: int | None, top_k: int, steps: int, strength: float,
                      given_start: bool = False) -> None:
        """Refuse, with a code and what to do, a request this bundle cannot serve (None
        parts: found after retrieval, always in range)."""
        if parts is not None and not 1 <= parts <= self.max_parts:
            raise RequestRefused("invalid_part_count", f"this model generates 1 to "
                                 f"{self.max_parts} parts, asked for {parts}")
        if top_k < 0:
            raise RequestRefused("invalid_parameter", f"top-k must be at least 0, got {top_k}")
        if top_k and (self.rag is None or self.bank is None):
            raise RequestRefused("invalid_parameter", f"{self.name} has no retrieval weights "
                                 f"or bank (rag/); use top-k 0")
        if top_k and self.bank is not None and top_k > len(self.bank):
            raise RequestRefused("invalid_parameter", f"top-k {top_k} exceeds the bank's "
                                 f"{len(self.bank)} assets")
        if steps < 1:
            raise RequestRefused("invalid_parameter",
                                 f"need at least one denoising step, got {steps}")
        if not 0.0 < strength <= 1.0:
            raise RequestRefused("invalid_parameter", f"strength must be in (0, 1], got {strength}")
        if strength < 1.0 and not given_start and (top_k == 0 or self.library is None):
            raise RequestRefused("invalid_parameter", "a strength below 1 starts from retrieved "
                                 "part latents: it needs top-k > 0 and the part library")

    def encode(self, image: np.ndarray, remove_background: bool = True):
        """Image -> framed RGBA -> encoder tokens, grid, pooled."""
        framed, _ = frame_object(to_rgba(image, remove_background))
        return conditioning.encode_images(self.encoder, [framed])

    def resolve(self, parts: int | None, steps: int | None, guidance: float | None,
                top_k: int | None, strength: float | None) -> dict:
        """A request's settings with every default filled in, the one place they are chosen:
        parts DEFAULT_PARTS; steps DEFAULT_STEPS; guidance the bundle's `default_guidance`;
        top-k `default_top_k`; strength DEFAULT_STRENGTH when retrieval can initialise
        sampling (k > 0 and a library), else 1 (from noise). Parts stay None (automatic):
        `automatic_parts` picks them once retrieval has run."""
        top_k = self.default_top_k if top_k is None else top_k
        if strength is None:
            strength = DEFAULT_STRENGTH if top_k and self.library is not None else 1.0
        return {"parts": parts,
                "steps": DEFAULT_STEPS if steps is None else steps,
                "guidance": self.default_guidance if guidance is None else guidance,
                "top_k": top_k, "strength": strength}

    @torch.no_grad()
    def __call__(self, image: np.ndarray, parts: int | None = None, *, steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, top_k: int | None = None,
                 strength: float | None = None, remove_background: bool = True,
                 exclude: str | None = None, start: torch.Tensor | None = None,
                 progress: Callable[[str, float], None] | None = None,
                 check_cancelled: Callable[[], None] | None = None) -> Generation:
        """None for any setting: its default (`resolve`). `exclude` keeps one asset id out
        of retrieval. `start` (parts, T, C) replaces the retrieved start latents of a
        strength below 1 (e.g. an object's own latents, to measure denoising from the truth)."""
        settings = self.resolve(parts, steps, guidance, top_k, strength)
        parts, steps, guidance = settings["parts"], settings["steps"], settings["guidance"]
        top_k, strength = settings["top_k"], settings["strength"]
        self.check_request(parts, top_k, steps, strength, given_start=start is not None)
        report = progress or (lambda stage, fraction: None)
        cancel = check_cancelled or (lambda: None)
        span = lambda stage, f: report(stage, STAGES[stage][0] + f * (STAGES[stage][1] - STAGES[stage][0]))
        watch, started = Stopwatch(self.device), time.perf_counter()

        span("encode", 0.0)
        with watch.stage("encode"):
            encoded = self.encode(image, remove_background)

        cancel()
        span("retrieve", 0.0)
        with watch.stage("retrieve"):
            context, hits, label_hits = self.retrieve(encoded, top_k, exclude)
        automatic = parts is None
        if automatic:
            parts = settings["parts"] = self.automatic_parts(label_hits)

        cancel()
        with watch.stage("denoise"):
            generator = torch.Generator("cpu").manual_seed(seed)
            noise = initial_noise((parts, self.tokens, self.transformer.config.in_channels),
                                  generator=generator, device=self.device)
            start_labels = None
            if start is None and strength < 1.0:
                start, start_labels = self.start_latents(hits, parts)
            if start is not None:
                start = self.scale.normalise(start.float().to(self.device))
            latents = self.sampler.sample(
                self.transformer, noise, per_part_rows(context, parts), torch.tensor([parts]),
                steps=steps, guidance=guidance, init=start, strength=strength,
                check_cancelled=cancel, progress=lambda done, total: span("denoise", done / total))
            latents = self.scale.denormalise(latents)

        with watch.stage("decode"):
            meshes = decode_parts(self.vae, latents, self.extract,
                                  progress=lambda f: span("decode", f), check_cancelled=cancel)

        labels = start_labels or self.labels(latents, label_hits)
        part_latents = latents.float().cpu().numpy()
        out = [m.as_part(label, i, part_latents[i]) for i, (m, label) in enumerate(zip(meshes, labels))]
        timings = {**watch.seconds, "total": time.perf_counter() - started}
        return Generation(out, [m.report() for m in meshes],
                          [{"asset_id": h.asset_id, "score": h.score} for h in hits], timings,
                          {**settings, "automatic_parts": automatic, "seed": seed,
                           "model": self.name}, image)

    def automatic_parts(self, hits: list[Hit]) -> int:
        """The part count of the nearest library asset (the top hit, also with k = 0), within
        the model's limit; DEFAULT_PARTS without a bank to ask."""
        if not hits:
            return DEFAULT_PARTS
        return min(int(self.bank.part_count[hits[0].index]), self.max_parts)

    def retrieve(self, encoded, top_k: int, exclude: str | None = None
                 ) -> tuple[torch.Tensor, list[Hit], list[Hit]]:
        """Encoded image -> (the DiT's context, the top-k hits in it, the hits that label
        parts: at least LABEL_NEIGHBOURS). Without a bank the context is the image's alone."""
        hits, label_hits = [], []
        if self.bank is not None:
            key = conditioning.object_embedding(encoded.pooled[0]).numpy()
            label_hits = self.bank.search(key, max(top_k, LABEL_NEIGHBOURS), exclude=exclude)
            hits = label_hits[:top_k]
        query = encoded.tokens.to(self.device)
        if not hits:
            return query, hits, label_hits
        images, latents = self.bank.context(hits)
        context = fuse_context(query, images[None].to(self.device),
                               self.scale.normalise(latents[None].to(self.device)), self.rag)
        return context, hits, label_hits

    def start_latents(self, hits: list[Hit], parts: int) -> tuple[torch.Tensor, list[str]]:
        """The first `parts` part latents of the retrieved assets and their labels: assets
        with exactly `parts` parts first (a whole exemplar, nothing dropped or borrowed),
        then by rank; parts repeat if all together have fewer."""
        rows = [self.library.row(hit.asset_id) for hit in hits]
        rows.sort(key=lambda row: len(self.library.part_rows(row)) != parts)  # stable: rank kept
        latents, labels = [], []
        for row in rows:
            latents += list(self.library.latents(row))
            labels += self.library.assets[row]["labels"]
        order = np.arange(parts) % len(latents)
        start = torch.from_numpy(np.stack([latents[i] for i in order])).to(self.device)
        return start, [labels[i] for i in order]

    def labels(self, latents: torch.Tensor, hits: list[Hit]) -> list[str]:
        if not hits:
            return [UNLABELLED] * len(latents)
        return self.bank.nearest_labels(latents.float().mean(1).cpu().numpy(), hits)
