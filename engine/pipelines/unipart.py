"""UniPart: one reference image -> parts, their number found by latent segmentation
(UniPart §3.2-3.3), behind the same contract as PartRAG (engine/pipelines/bundle.py).

    image -> RGBA -> encoder tokens
          -> whole-level DiT: the object's Geom-Seg latent Ẑ (L tokens)
          -> latent segmentation (frozen D_seg, FPS prompts over D_pos anchors, NMS)
             -> N sets X_i (or exactly `parts` of them: segment_count)
          -> dual-space part DiT per part: X_gcs (object frame) and X_ncs (the part's own
             normalised box), conditioned on the image, Ẑ and X_i
          -> both decoded by the part VAE; the part is M_ncs placed by M_gcs's box
             (centre, longest side), falling back to M_gcs where M_ncs has no surface
          -> local meshes + translation transforms + labels (nearest library part) + mesh ids

Bundle folder: model_index.json, whole/ (transformer/), part/ (transformer/, segment/),
segmenter/ (the Geom-Seg VAE's segmentation and anchor decoders, its `seg/` folder: latent
segmentation needs nothing else of it), vae/ (the part VAE), scheduler/,
latent_scales.json (per-channel standardisation of Z, X_gcs and X_ncs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bridge.errors import RequestRefused
from engine.device import Stopwatch
from engine.models.dual_lane_dit import DualLaneDiT
from engine.models.flow_sampler import GUIDANCE_KEY, FlowSampler, initial_noise
from engine.models.geomseg_vae import GeomSegVAE
from engine.models.rag_context import per_part_rows
from engine.models.unipart_context import SCALES_NAME, Scales, SegmentContext
from engine.models.vecset_vae import VecSetVAE
from engine.pipelines.bundle import CLASS_KEY, read_model_index, write_model_index
from engine.pipelines.decode import ExtractSettings, PartMesh, decode_parts, share_meshes
from engine.pipelines.partrag import DEFAULT_STEPS, Generation, installed_library
from engine.render.image_prep import frame_object, to_rgba
from engine.retrieval import conditioning
from engine.retrieval.library import PartLibrary

CLASS_NAME = "UniPartPipeline"
COMPONENTS = {"whole": ("engine", "DualLaneDiT"), "part": ("engine", "DualLaneDiT"),
              "segmenter": ("engine", "GeomSegVAE"), "vae": ("engine", "VecSetVAE"),
              "scheduler": ("engine", "FlowSampler")}
DEFAULT_GUIDANCE = 3.0
BOX_RESOLUTION = 64  # the GCS mesh only places the NCS one: its box is all that is used
MAX_PARTS = 16
UNLABELLED = "object_part"
STAGES = {"encode": (0.0, 0.03), "whole": (0.03, 0.25), "segment": (0.25, 0.27),
          "parts": (0.27, 0.6), "decode": (0.6, 1.0)}


def segment_count(parts: torch.Tensor, anchors: torch.Tensor, wanted: int | None) -> torch.Tensor:
    """Part index per latent (L,) with exactly `wanted` parts (None: as found). Extra parts
    (the least confident: segment_latents numbers them by mask score) give their latents to
    the kept part with the nearest anchor centroid; missing ones come from splitting the
    largest part in two along its anchors' longest axis."""
    parts = parts.clone()
    if wanted is None:
        return parts
    found = int(parts.max()) + 1
    if found > wanted:
        centroids = torch.stack([anchors[parts == k].mean(0) for k in range(wanted)])
        extra = parts >= wanted
        parts[extra] = torch.cdist(anchors[extra], centroids).argmin(1)
    while int(parts.max()) + 1 < wanted:
        sizes = torch.bincount(parts)
        largest = int(sizes.argmax())
        if sizes[largest] < 2:
            break  # no part left to split: fewer latents than parts
        members = (parts == largest).nonzero().squeeze(1)
        points = anchors[members]
        axis = int((points.max(0).values - points.min(0).values).argmax())
        order = points[:, axis].argsort()
        parts[members[order[len(order) // 2:]]] = int(parts.max()) + 1
    return parts


def compose(gcs: PartMesh, ncs: PartMesh) -> PartMesh:
    """The NCS mesh placed by the GCS mesh's box: its centre, and a uniform scale taking
    the NCS mesh's longest side to the GCS mesh's. An empty NCS mesh leaves the GCS one."""
    if ncs.empty or gcs.empty:
        return gcs
    scale = float(np.ptp(gcs.vertices, 0).max() / max(np.ptp(ncs.vertices, 0).max(), 1e-9))
    return replace(gcs, vertices=(ncs.vertices * scale).astype(np.float32), faces=ncs.faces,
                   pieces=ncs.pieces, debris_removed=ncs.debris_removed,
                   raw_debris=ncs.raw_debris)


@dataclass
class SampledLatents:
    z: torch.Tensor  # (L, d) the whole object's Geom-Seg latent
    anchors: torch.Tensor  # (L, 3) D_pos's anchor position of each latent
    segments: torch.Tensor  # (L,) part index per latent
    found: int  # parts the segmentation found before `segment_count`
    gcs: torch.Tensor  # (parts, L, d) object frame, as the part VAE decodes them
    ncs: torch.Tensor  # (parts, L, d) each part's normalised box

    @property
    def count(self) -> int:
        return len(self.gcs)


class UniPartPipeline:
    """The networks of a UniPart bundle, loaded once; call it per image."""

    class_names = (CLASS_NAME,)
    operation = "generate"

    def __init__(self, whole: DualLaneDiT, part: DualLaneDiT, segment: SegmentContext,
                 geomseg: GeomSegVAE, vae: VecSetVAE, sampler: FlowSampler, scales: Scales, *,
                 encoder_spec: str = conditioning.DEFAULT_ENCODER,
                 device: str | torch.device = "cpu", extract: ExtractSettings | None = None,
                 library: PartLibrary | None = None, name: str = "this bundle"):
        self.device, self.name = torch.device(device), name
        self.whole = whole.float().to(self.device).eval()
        self.part = part.float().to(self.device).eval()
        self.segment = segment.float().to(self.device).eval()
        self.geomseg = geomseg.float().to(self.device).eval()
        self.vae = vae.float().to(self.device).eval()
        self.sampler, self.scales = sampler, scales
        self.encoder_spec = encoder_spec
        self.encoder = conditioning.load_encoder(encoder_spec, self.device)
        self.extract = extract or ExtractSettings()
        self.library = library
        self._label_means = None if library is None else library.shape_features("part")

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu", *,
                        extract: ExtractSettings | None = None, library=None) -> UniPartPipeline:
        """Load a bundle folder; labels come from the part library installed beside it
        (models/library next to models/unipart) unless `library` names another."""
        folder = Path(folder)
        index = read_model_index(folder)
        if index[CLASS_KEY] not in cls.class_names:
            raise ValueError(f"{folder} holds a {index[CLASS_KEY]}, not a {CLASS_NAME}")
        library = library or installed_library(folder)
        vae = VecSetVAE.from_pretrained(folder / "vae")
        return cls(DualLaneDiT.from_pretrained(folder / "whole" / "transformer"),
                   DualLaneDiT.from_pretrained(folder / "part" / "transformer"),
                   SegmentContext.from_pretrained(folder / "part" / "segment"),
                   GeomSegVAE.with_additions(vae, folder / "segmenter"), vae,
                   FlowSampler.from_pretrained(folder / "scheduler"),
                   Scales.load(folder / SCALES_NAME),
                   device=device, extract=extract,
                   library=PartLibrary.load(library) if library is not None else None,
                   name=str(folder))

    @property
    def max_parts(self) -> int:
        return MAX_PARTS

    @property
    def default_guidance(self) -> float:
        return float(self.sampler.extra_config.get(GUIDANCE_KEY, DEFAULT_GUIDANCE))

    def check_request(self, parts: int | None, steps: int) -> None:
        if parts is not None and not 1 <= parts <= self.max_parts:
            raise RequestRefused("invalid_part_count", f"this model generates 1 to "
                                 f"{self.max_parts} parts, asked for {parts}")
        if steps < 1:
            raise RequestRefused("invalid_parameter",
                                 f"need at least one denoising step, got {steps}")

    @torch.no_grad()
    def __call__(self, image: np.ndarray, parts: int | None = None, *, steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, top_k: int | None = None,
                 strength: float | None = None, remove_background: bool = True,
                 progress: Callable[[str, float], None] | None = None,
                 check_cancelled: Callable[[], None] | None = None) -> Generation:
        """None parts: as many as the latent segmentation finds. `top_k` and `strength`
        (PartRAG's retrieval settings) are refused: UniPart retrieves nothing."""
        if top_k or (strength is not None and strength != 1.0):
            raise RequestRefused("invalid_parameter", "UniPart takes no top-k or strength "
                                 "(it retrieves nothing and starts from noise)")
        steps = DEFAULT_STEPS if steps is None else steps
        guidance = self.default_guidance if guidance is None else guidance
        self.check_request(parts, steps)
        report = progress or (lambda stage, fraction: None)
        cancel = check_cancelled or (lambda: None)
        span = lambda stage, f: report(stage, STAGES[stage][0] + f * (STAGES[stage][1] - STAGES[stage][0]))
        watch, started = Stopwatch(self.device), time.perf_counter()
        sampled = self.latents(image, parts, steps, guidance, seed, remove_background, watch,
                               span, cancel)
        gcs, ncs, count = sampled.gcs, sampled.ncs, sampled.count
        with watch.stage("decode"):
            meshes = self.decode(gcs, ncs, lambda f: span("decode", f), cancel)
        labels = self.labels(gcs)
        latents = gcs.float().cpu().numpy()
        out = [m.as_part(label, i, latents[i]) for i, (m, label) in enumerate(zip(meshes, labels))]
        segmentation = np.concatenate([sampled.anchors.float().cpu().numpy(),
                                       sampled.segments.cpu().numpy()[:, None]], 1)
        timings = {**watch.seconds, "total": time.perf_counter() - started}
        return Generation(out, [m.report() for m in meshes], [], timings,
                          {"parts": count, "automatic_parts": parts is None,
                           "segments_found": sampled.found, "steps": steps,
                           "guidance": guidance, "seed": seed, "model": self.name}, image,
                          segmentation.astype(np.float32))

    @torch.no_grad()
    def latents(self, image: np.ndarray, parts: int | None, steps: int, guidance: float,
                seed: int, remove_background: bool = True, watch: Stopwatch | None = None,
                span=None, cancel=None) -> SampledLatents:
        """Everything up to decoding: Ẑ, its segmentation and each part's two latents."""
        watch = watch or Stopwatch(self.device)
        span = span or (lambda stage, fraction: None)
        cancel = cancel or (lambda: None)
        generator = torch.Generator("cpu").manual_seed(seed)
        span("encode", 0.0)
        with watch.stage("encode"):
            framed, _ = frame_object(to_rgba(image, remove_background))
            tokens = conditioning.encode_images(self.encoder, [framed]).tokens.to(self.device)
        with watch.stage("whole"):
            z = self.sample_whole(tokens, steps, guidance, generator, cancel,
                                  lambda f: span("whole", f))
        span("segment", 0.0)
        with watch.stage("segment"):
            found = self.geomseg.segment_latents(z)
            anchors = self.geomseg.predict_anchors(z)
            segments = segment_count(found, anchors, parts)
        count = int(segments.max()) + 1
        with watch.stage("parts"):
            gcs, ncs = self.sample_parts(tokens, z, segments, count, steps, guidance,
                                         generator, cancel, lambda f: span("parts", f))
        return SampledLatents(z, anchors, segments, int(found.max()) + 1, gcs, ncs)

    def sample_whole(self, tokens, steps, guidance, generator, cancel, progress) -> torch.Tensor:
        """The whole object's Geom-Seg latent Ẑ (L, d), as the VAE decodes it."""
        shape = (1, self.vae.encode_tokens, self.whole.config.in_channels)
        noise = initial_noise(shape, generator=generator, device=self.device)
        z = self.sampler.sample(self.whole, noise, tokens, torch.tensor([1]), steps=steps,
                                guidance=guidance, check_cancelled=cancel,
                                progress=lambda done, total: progress(done / total))
        return self.scales.z.denormalise(z)[0]

    def sample_parts(self, tokens, z, segments, count, steps, guidance, generator, cancel,
                     progress) -> tuple[torch.Tensor, torch.Tensor]:
        """Every part's (X_gcs, X_ncs) in one batch: (count, L, d) each, as the part VAE
        decodes them."""
        flags = torch.stack([(segments == k).float() for k in range(count)])
        segment = torch.cat([self.scales.z.normalise(z).expand(count, -1, -1), flags[..., None]],
                            dim=-1)
        context = torch.cat([tokens.expand(count, -1, -1), self.segment(segment)], dim=1)
        shape = (2 * count, self.vae.encode_tokens, self.part.config.in_channels)
        noise = initial_noise(shape, generator=generator, device=self.device)
        counts = torch.full((count,), 2)
        x = self.sampler.sample(self.part, noise, per_part_rows(context, counts), counts,
                                steps=steps, guidance=guidance, check_cancelled=cancel,
                                progress=lambda done, total: progress(done / total))
        return self.scales.gcs.denormalise(x[0::2]), self.scales.ncs.denormalise(x[1::2])

    @torch.no_grad()
    def decode(self, gcs: torch.Tensor, ncs: torch.Tensor, progress, cancel) -> list[PartMesh]:
        """Each part's NCS mesh placed by its GCS mesh's box. Only the box of the GCS mesh is
        used, so it is extracted coarsely (BOX_RESOLUTION, no clean-up); a part whose NCS
        latent holds no surface keeps its GCS mesh, extracted in full."""
        boxes = decode_parts(self.vae, gcs, replace(self.extract, resolution=BOX_RESOLUTION,
                                                     coarse_resolution=16, clean=False))
        shapes = decode_parts(self.vae, ncs, self.extract, progress=progress,
                              check_cancelled=cancel)
        meshes = [compose(box, shape) for box, shape in zip(boxes, shapes)]
        for i, shape in enumerate(shapes):
            if shape.empty:
                meshes[i] = decode_parts(self.vae, gcs[i:i + 1], self.extract)[0]
            meshes[i].mesh_id = i
        share_meshes(meshes)
        return meshes

    def labels(self, gcs: torch.Tensor) -> list[str]:
        """Each part's label: the library part nearest its object-frame latent (cosine of
        mean latents, the space the library's latents are in)."""
        if self.library is None:
            return [UNLABELLED] * len(gcs)
        unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
        nearest = (unit(gcs.float().mean(1).cpu().numpy()) @ unit(self._label_means).T).argmax(1)
        return [self.library.part_labels[i] for i in nearest]

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the bundle (weights in float16; they load into float32 networks)."""
        import copy

        folder = Path(folder)
        copy.deepcopy(self.whole).cpu().half().save_pretrained(folder / "whole" / "transformer")
        copy.deepcopy(self.part).cpu().half().save_pretrained(folder / "part" / "transformer")
        copy.deepcopy(self.segment).cpu().half().save_pretrained(folder / "part" / "segment")
        copy.deepcopy(self.geomseg).cpu().half().save_additions(folder / "segmenter")
        copy.deepcopy(self.vae).cpu().half().save_pretrained(folder / "vae")
        self.sampler.save_pretrained(folder / "scheduler")
        self.scales.save(folder / SCALES_NAME)
        write_model_index(folder, CLASS_NAME, COMPONENTS)
