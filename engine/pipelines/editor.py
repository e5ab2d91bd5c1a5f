"""PartRAG's part editor (§3.5, Algorithm 3): change some parts of an asset, keep the rest.

The target parts S start from their new initialisation noised to σ0 = `strength` and are
denoised by masked flow matching (FlowSampler `frozen`): the other parts enter every step at
the current σ, re-noised from their clean latents, so the DiT sees one σ per object as in
training. Frozen parts come back as the very Part objects they came in (same arrays, same
transform). Operations:

    refine       start from the targets' own latents; the seed varies the result
    swap         start from a library part fitted into the target's place (align_to)
    place        the fitted library part itself, no denoising: instant and always clean
    interpolate  start from (1 - α)·own + α·a library part's latent (attribute refinement;
                 by default the nearest library part of the same label)
    assemble     several targets resynthesised jointly from noise beside the frozen parts

Parts without a latent (moved in the viewport since they were generated, or brought by the
artist from anywhere) are encoded from their mesh at their current transform first. With a
reference image the context is the image plus its retrieved exemplars, as in generation;
without one it is the zero context (the unconditional branch the DiT was trained with).
After decoding, edited vertices close to a frozen neighbour are snapped onto it and the
edited mesh is smoothed there (seams.py). A swap is checked against what was asked for when
an HCR retriever is installed beside the bundle: unless the edited part's nearest library
part in the retriever's part space has the requested label, the swap retries from the next
candidate of that label (the best try is kept; its report says the score and the tries).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bridge.errors import RequestRefused
from bridge.protocol import Part
from engine.device import Stopwatch
from engine.models.flow_sampler import initial_noise
from engine.models.rag_context import per_part_rows
from engine.pipelines.decode import ExtractSettings, decode_parts
from engine.pipelines.partrag import INSTALLED, Generation, PartRAGPipeline
from engine.pipelines.seams import close_seams
from engine.retrieval.hcr import HCR
from engine.retrieval.shape import encode_meshes

OPERATIONS = ("refine", "swap", "place", "interpolate", "assemble")
# Start σ per operation: a swap keeps most of the library part, assembling starts from noise.
DEFAULT_STRENGTH = {"refine": 0.5, "swap": 0.3, "interpolate": 0.3, "assemble": 1.0}
DEFAULT_EDIT_STEPS = 20  # PartRAG's K for edits
# A swap whose result is not nearer the requested label than any other in the retriever's
# part space (semantic_score at most this margin) retries from the next candidate of that
# label, SEMANTIC_TRIES times in all at most.
SEMANTIC_THRESHOLD, SEMANTIC_TRIES = 0.0, 3
STAGES = {"encode": (0.0, 0.1), "denoise": (0.1, 0.6), "decode": (0.6, 1.0)}


@dataclass(frozen=True)
class LibraryPart:
    """One part of a library asset: what a swap, place or interpolation starts from."""
    asset_id: str
    part: int


def part_extent(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bounding-box centre, size) of a vertex array."""
    low, high = vertices.min(0), vertices.max(0)
    return (low + high) / 2, high - low


def align_to(target: Part, source: Part) -> Part:
    """`source` fitted into `target`'s place: its object-frame shape centred on the target's
    local bounding box and scaled uniformly so their largest sizes match, carrying the
    target's transform, index and mesh id slot. The target's pose (where it attaches) is
    kept; the library part brings its shape and label."""
    shape = source.object_vertices()
    source_centre, source_size = part_extent(shape)
    target_centre, target_size = part_extent(target.vertices.astype(np.float64))
    scale = target_size.max() / max(source_size.max(), 1e-9)
    local = target_centre + scale * (shape - source_centre)
    return Part(local.astype(np.float32), np.ascontiguousarray(source.faces, dtype=np.int32),
                target.transform.copy(), source.label, target.index, target.mesh_id)


def free_mesh_ids(parts: list[Part], count: int) -> list[str]:
    """`count` mesh ids no part uses yet (mesh<n>, lowest n first)."""
    used, ids, n = {p.mesh_id for p in parts}, [], 0
    while len(ids) < count:
        if f"mesh{n}" not in used:
            ids.append(f"mesh{n}")
        n += 1
    return ids


class PartEditor:
    """The masked part editor over a PartRAG bundle's networks and part library."""

    operation = "edit"  # the bridge request it serves

    def __init__(self, pipeline: PartRAGPipeline, retriever: HCR | None = None):
        """`retriever`: the HCR retriever whose part head scores swaps (semantic check)."""
        self.pipeline, self.retriever = pipeline, retriever
        self._part_space = None  # the library's parts in the retriever's space, on first use

    @classmethod
    def over(cls, pipeline: PartRAGPipeline, folder) -> PartEditor:
        """The editor of a loaded bundle, with the retriever installed beside it if any
        (models/retriever next to models/partrag)."""
        retriever = Path(folder).parent / "retriever"
        return cls(pipeline, HCR.from_pretrained(retriever)
                   if (retriever / "config.json").is_file() else None)

    @classmethod
    def from_pretrained(cls, folder, device="cpu", *, extract: ExtractSettings | None = None,
                        library=INSTALLED) -> PartEditor:
        return cls.over(PartRAGPipeline.from_pretrained(folder, device, extract=extract,
                                                        library=library), folder)

    def library_part(self, source: LibraryPart) -> Part:
        """A library part as a Part (object pose from its asset), refused when unknown."""
        library = self.pipeline.library
        if library is None:
            raise RequestRefused("model_unavailable", "swaps need the part library installed "
                                 "beside the bundle (models/library)")
        asset = library.asset(source.asset_id)
        if not 0 <= source.part < len(asset.parts):
            raise RequestRefused("unknown_asset", f"{source.asset_id} has {len(asset.parts)} "
                                 f"parts, no part {source.part}")
        return asset.parts[source.part]

    def fitted(self, target: Part, source: LibraryPart, seed: int) -> Part:
        """The library part aligned into `target`'s place, with its encoded latent."""
        fitted = align_to(target, self.library_part(source))
        fitted.latent = encode_meshes(self.pipeline.vae,
                                      [(fitted.object_vertices(), fitted.faces)], seed)[0]
        return fitted

    def check(self, parts: list[Part], targets: list[int], operation: str,
              source: LibraryPart | None, alpha: float | None, strength: float,
              steps: int) -> None:
        """Refuse, with a code and what to do, an edit that cannot be served."""
        if operation not in OPERATIONS:
            raise RequestRefused("invalid_parameter", f"unknown edit operation {operation!r}; "
                                 f"one of {', '.join(OPERATIONS)}")
        if not 1 <= len(parts) <= self.pipeline.max_parts:
            raise RequestRefused("invalid_part_count", f"this model edits assets of 1 to "
                                 f"{self.pipeline.max_parts} parts, got {len(parts)}")
        if not targets:
            raise RequestRefused("invalid_part", "name at least one part to edit")
        if len(set(targets)) != len(targets) or not all(0 <= t < len(parts) for t in targets):
            raise RequestRefused("invalid_part", f"part indices must be distinct and in 0.."
                                 f"{len(parts) - 1}, got {targets}")
        if operation in ("swap", "place") and source is None:
            raise RequestRefused("invalid_parameter", f"{operation} needs the library part to "
                                 f"put in (asset id and part)")
        if operation in ("swap", "place", "interpolate") and len(targets) != 1:
            raise RequestRefused("invalid_part", f"{operation} changes one part at a time, "
                                 f"got {len(targets)}")
        if operation == "interpolate" and (alpha is None or not 0.0 <= alpha <= 1.0):
            raise RequestRefused("invalid_parameter", f"interpolate needs α in [0, 1], got {alpha}")
        if operation == "assemble" and len(targets) < 2:
            raise RequestRefused("invalid_part", "assemble resynthesises several parts "
                                 "together; use refine for one")
        if operation != "place":
            if not 0.0 < strength <= 1.0:
                raise RequestRefused("invalid_parameter",
                                     f"strength must be in (0, 1], got {strength}")
            if steps < 1:
                raise RequestRefused("invalid_parameter",
                                     f"need at least one denoising step, got {steps}")
        tokens, channels = self.pipeline.tokens, self.pipeline.transformer.config.in_channels
        for part in parts:
            if part.latent is not None and part.latent.shape != (tokens, channels):
                raise RequestRefused("invalid_latent", f"part {part.index}'s latent is "
                                     f"{part.latent.shape}, this model's are {(tokens, channels)}")

    def latents_of(self, parts: list[Part], seed: int) -> np.ndarray:
        """(parts, T, C) latents: each part's own, or its mesh encoded at its current pose."""
        missing = [i for i, p in enumerate(parts) if p.latent is None]
        encoded = (encode_meshes(self.pipeline.vae, [(parts[i].object_vertices(), parts[i].faces)
                                                     for i in missing], seed)
                   if missing else [])
        latents = [p.latent for p in parts]
        for i, latent in zip(missing, encoded):
            latents[i] = latent
        return np.stack([np.asarray(x, np.float32) for x in latents])

    @torch.no_grad()
    def __call__(self, parts: list[Part], targets: list[int], operation: str, *,
                 image: np.ndarray | None = None, source: LibraryPart | None = None,
                 alpha: float | None = None, strength: float | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int = 0,
                 top_k: int | None = None, renoise_frozen: bool = True, masked: bool = True,
                 remove_background: bool = True,
                 progress: Callable[[str, float], None] | None = None,
                 check_cancelled: Callable[[], None] | None = None) -> Generation:
        """Edit `targets` (indices into `parts`) of an asset; returns every part in order,
        the frozen ones untouched. None for a setting: its default (strength per
        operation, DEFAULT_EDIT_STEPS, the bundle's guidance and top-k). `renoise_frozen`
        False (frozen parts clean at every step) and `masked` False (every part sampled, the
        targets kept) are the evaluation's ablations, not options for artists."""
        pipe = self.pipeline
        strength = DEFAULT_STRENGTH.get(operation, 1.0) if strength is None else strength
        steps = DEFAULT_EDIT_STEPS if steps is None else steps
        self.check(parts, targets, operation, source, alpha, strength, steps)
        settings = pipe.resolve(len(parts), steps, guidance, top_k, strength)
        report = progress or (lambda stage, fraction: None)
        cancel = check_cancelled or (lambda: None)
        span = lambda stage, f: report(stage, STAGES[stage][0] + f * (STAGES[stage][1] - STAGES[stage][0]))
        watch, started = Stopwatch(pipe.device), time.perf_counter()
        params = {"model": pipe.name, "operation": operation, "targets": list(targets),
                  "strength": strength,
                  "steps": steps, "guidance": settings["guidance"], "seed": seed,
                  "top_k": settings["top_k"] if image is not None else 0, "alpha": alpha,
                  "source": None if source is None else [source.asset_id, source.part]}
        if operation == "place":
            params.update(strength=0.0, steps=0)

        span("encode", 0.0)
        with watch.stage("encode"):
            fitted = None if source is None else self.fitted(parts[targets[0]], source, seed)
        if operation == "place":
            edited = [replace(fitted, mesh_id=free_mesh_ids(parts, 1)[0])]
            return self.result(parts, targets, edited, [{"empty": False, "edited": True}],
                               [], watch, started, params, image)
        with watch.stage("encode"):
            latents = torch.from_numpy(self.latents_of(parts, seed)).to(pipe.device)
            start = latents.clone()
            if operation == "swap":
                start[targets[0]] = torch.from_numpy(fitted.latent)
            elif operation == "interpolate":
                if fitted is None:
                    fitted = self.fitted(parts[targets[0]], self.search(parts, targets[0], 1)[0], seed)
                start[targets[0]] = ((1 - alpha) * latents[targets[0]]
                                     + alpha * torch.from_numpy(fitted.latent).to(pipe.device))
            retrieved, context = [], None
            if image is not None:
                encoded = pipe.encode(image, remove_background)
                context, hits, _ = pipe.retrieve(encoded, settings["top_k"])
                retrieved = [{"asset_id": h.asset_id, "score": h.score} for h in hits]
            else:
                width = pipe.transformer.config.cross_attention_dim
                context = torch.zeros(1, 1, width, device=pipe.device)

        frozen_parts = [p for i, p in enumerate(parts) if i not in targets]
        tried, best = [], None
        while True:  # swaps retry from the next candidate while the semantic check fails
            cancel()
            with watch.stage("denoise"):
                sampled = self.sample(start, targets, context, settings["guidance"], strength,
                                      steps, seed, masked, renoise_frozen, cancel,
                                      lambda f: span("denoise", f))
            with watch.stage("decode"):
                meshes = decode_parts(pipe.vae, sampled, pipe.extract,
                                      progress=lambda f: span("decode", f), check_cancelled=cancel)
            edited = [mesh.as_part(fitted.label if fitted is not None else parts[t].label, t, latent)
                      for mesh, t, latent in zip(meshes, targets, sampled.float().cpu().numpy())]
            reports = [{**m.report(), "edited": True} for m in meshes]
            score = self.semantic_score(edited[0].latent, fitted.label) if operation == "swap" else None
            tried.append(source)
            if score is not None:
                reports[0].update(semantic_score=score, tries=len(tried))
            if best is None or (score is not None and score > best[0]):
                best = (score, edited, reports, source)
            following = (self.search(parts, targets[0], SEMANTIC_TRIES + len(tried), fitted.label)
                         if score is not None and score < SEMANTIC_THRESHOLD
                         and len(tried) < SEMANTIC_TRIES else [])
            following = [c for c in following if c not in tried]
            if not following:
                break
            source = following[0]
            fitted = self.fitted(parts[targets[0]], source, seed)
            start[targets[0]] = torch.from_numpy(fitted.latent).to(pipe.device)
        _, edited, reports, source = best
        if operation == "swap":
            reports[0]["tries"] = len(tried)
            params["source"] = [source.asset_id, source.part]
        edited = close_seams(edited, frozen_parts, [parts[t] for t in targets])
        # Targets decode_parts linked (one array for identical meshes) and the seams left
        # alone share a new mesh id; every other edited part gets its own.
        ids, shared = free_mesh_ids(parts, len(targets)), {}
        edited = [replace(p, mesh_id=shared.setdefault(id(p.vertices), ids[len(shared)]))
                  for p in edited]
        return self.result(parts, targets, edited, reports, retrieved, watch, started, params,
                           image)

    def sample(self, start: torch.Tensor, targets: list[int], context: torch.Tensor,
               guidance: float, strength: float, steps: int, seed: int, masked: bool,
               renoise_frozen: bool, cancel, progress) -> torch.Tensor:
        """Masked flow sampling of the target rows of `start` (raw latents, all parts);
        returns the targets' new raw latents."""
        pipe = self.pipeline
        count = len(start)
        generator = torch.Generator("cpu").manual_seed(seed)
        noise = initial_noise(tuple(start.shape), generator=generator, device=pipe.device)
        frozen = torch.ones(count, dtype=torch.bool)
        frozen[targets] = False
        init = pipe.scale.normalise(start)
        if not masked:
            frozen, init = None, init if strength < 1.0 else None
        sampled = pipe.sampler.sample(
            pipe.transformer, noise, per_part_rows(context, count), torch.tensor([count]),
            steps=steps, guidance=guidance, init=init, strength=strength, frozen=frozen,
            renoise_frozen=renoise_frozen, check_cancelled=cancel,
            progress=lambda done, total: progress(done / total))
        return pipe.scale.denormalise(sampled)[targets]

    def part_space(self) -> torch.Tensor:
        """The library's parts in the retriever's part space (its shape head on mean
        latents, trained so that parts of one label meet), computed once."""
        if self._part_space is None:
            means = np.asarray(self.pipeline.library.shape_features("part"), np.float32)
            self._part_space = self.retriever.embed("part", "shape", torch.from_numpy(means))
        return self._part_space

    def nearest_label(self, latent: np.ndarray) -> str:
        """The label of the library part nearest a part latent: in the retriever's part
        space when one is installed, else by mean latents."""
        library = self.pipeline.library
        if self.retriever is None:
            means = library.shape_features("part")
            return library.part_labels[int(np.linalg.norm(means - latent.mean(0), axis=1).argmin())]
        return library.part_labels[int(self.similarities(latent).argmax())]

    def similarities(self, latent: np.ndarray) -> torch.Tensor:
        """Cosine of a part latent to every library part in the retriever's part space."""
        query = torch.from_numpy(latent.mean(0, keepdims=True).astype(np.float32))
        return self.part_space() @ self.retriever.embed("part", "shape", query)[0]

    def semantic_score(self, latent: np.ndarray, label: str) -> float | None:
        """How clearly an edited part is a `label` in the retriever's part space: its best
        cosine to library parts of that label minus its best to any other label (> 0: the
        nearest library part has the label). None without a retriever installed beside the
        bundle."""
        if self.retriever is None:
            return None
        similarity = self.similarities(latent)
        wanted = torch.from_numpy(np.asarray(self.pipeline.library.part_labels) == label)
        if not wanted.any() or wanted.all():
            return None
        return float(similarity[wanted].max() - similarity[~wanted].max())

    def search(self, parts: list[Part], target: int, k: int = 12,
               label: str | None = None) -> list[LibraryPart]:
        """Swap candidates for one part: library parts labelled like it (or `label`), the
        closest in shape first (mean latents), the part itself left out when it came from
        the library; parts of any label when none has it."""
        library = self.pipeline.library
        if library is None:
            raise RequestRefused("model_unavailable", "part search needs the part library "
                                 "installed beside the bundle (models/library)")
        part = parts[target]
        latent = part.latent if part.latent is not None else self.latents_of([part], 0)[0]
        distance = np.linalg.norm(library.shape_features("part") - latent.mean(0), axis=1)
        distance[distance < 1e-4] = np.inf
        labels = np.asarray(library.part_labels)
        wanted = labels == (label or part.label)
        if wanted.any():
            distance[~wanted] = np.inf
        rows = [int(r) for r in np.argsort(distance)[:k] if np.isfinite(distance[r])]
        return [LibraryPart(library.ids[library.part_asset[row]], int(library.part_index[row]))
                for row in rows]

    def result(self, parts: list[Part], targets: list[int], edited: list[Part],
               reports: list[dict], retrieved: list[dict], watch: Stopwatch, started: float,
               params: dict, image: np.ndarray | None) -> Generation:
        out, out_reports = list(parts), [{"edited": False} for _ in parts]
        for t, part, rep in zip(targets, edited, reports):
            out[t], out_reports[t] = part, rep
        timings = {**watch.seconds, "total": time.perf_counter() - started}
        return Generation(out, out_reports, retrieved, timings, params, image)
