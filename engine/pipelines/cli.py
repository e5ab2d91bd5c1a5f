"""`python -m engine generate IMAGE --parts N ...`: one image -> part meshes on disk."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="reference image -> part meshes (PartRAG "
                                   "or UniPart)")
    parser.add_argument("image", type=Path, help="PNG/JPEG/WebP; RGBA, or RGB on a uniform "
                        "background (removed unless --keep-background)")
    parser.add_argument("--parts", type=part_count, metavar="N|auto",
                        help="number of parts to generate (default auto: the nearest library "
                             "asset's)")
    parser.add_argument("--pipeline", default="partrag",
                        help="installed bundle to run: models/NAME (default partrag; unipart "
                             "finds the part count itself)")
    parser.add_argument("--model", type=Path, help="a bundle or public PartCrafter folder "
                        "anywhere (default models/PIPELINE)")
    parser.add_argument("--top-k", type=int, help="retrieved exemplars (default 3, or 0 for a "
                        "folder without retrieval weights such as PartCrafter's; 0: none)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 12)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the bundle's; 7 for public PartCrafter weights)")
    parser.add_argument("--strength", type=float,
                        help="start σ when sampling from the retrieved parts (default 0.5 with "
                             "retrieval and the library installed; 1: from pure noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-background", action="store_true",
                        help="treat the whole RGB image as the object (no background removal)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    detail = parser.add_mutually_exclusive_group()
    detail.add_argument("--max-faces", type=face_budget, metavar="N",
                        help="triangles per part at most (default 20,000)")
    detail.add_argument("--full-resolution", action="store_true",
                        help="keep every marching-cubes triangle (no decimation)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run_generate)


def part_count(text: str) -> int | None:
    """--parts: a positive count, or auto (None: the pipeline decides)."""
    if text == "auto":
        return None
    try:
        parts = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of parts or auto, not {text!r}") from None
    if parts < 1:
        raise argparse.ArgumentTypeError(f"at least 1 part, not {parts}")
    return parts


def face_budget(text: str) -> int:
    """--max-faces: enough triangles for a closed mesh."""
    faces = int(text)
    if faces < 4:
        raise argparse.ArgumentTypeError(f"a closed part needs at least 4 faces, not {faces}")
    return faces


def read_image(path: Path):
    """An image file as a uint8 array: RGB or RGBA as stored, anything else as RGBA."""
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(path))
    if image.dtype != np.uint8 or image.ndim != 3:
        image = np.asarray(Image.open(path).convert("RGBA"))
    return image


def generate_files(image, out: Path, parts: int | None, *, model: Path, device: str = "auto",
                   seed: int = 0, steps: int | None = None, guidance: float | None = None,
                   top_k: int | None = None, strength: float | None = None,
                   remove_background: bool = True, extract=None):
    """Run the PartRAG bundle or PartCrafter folder `model` on `image` and write the
    generation's files into `out` (outputs.write_generation); returns the Generation. None
    means the default (parts: automatic; top-k: the pipeline's, 0 without retrieval weights;
    extract: the pipeline's ExtractSettings)."""
    from engine.device import resolve_device
    from engine.pipelines.outputs import write_generation
    from engine.pipelines.registry import load_pipeline

    pipeline = load_pipeline(model, resolve_device(device), extract=extract)
    generation = pipeline(image, parts, seed=seed, steps=steps, guidance=guidance, top_k=top_k,
                          strength=strength, remove_background=remove_background)
    write_generation(generation, out)
    return generation


def run_generate(args: argparse.Namespace) -> int:
    from engine.pipelines.decode import ExtractSettings
    from engine.pipelines.registry import DEFAULT_MODELS
    from engine.render.image_prep import ImageError

    args.model = args.model or DEFAULT_MODELS / args.pipeline
    if not ((args.model / "model_index.json").is_file() or (args.model / "transformer").is_dir()):
        print(f"no model at {args.model}: neither a bundle (train one with `python -m engine "
              f"train dit|unipart ... --export {args.model}`) nor a PartCrafter folder "
              f"(transformer/, vae/, scheduler/, image_encoder_dinov2/, ...)", file=sys.stderr)
        return 2
    try:
        image = read_image(args.image)
    except (OSError, ValueError) as error:
        print(f"cannot read {args.image}: {error}", file=sys.stderr)
        return 2
    extract = ExtractSettings()
    if args.max_faces is not None or args.full_resolution:
        extract.max_faces = args.max_faces  # None with --full-resolution: no decimation
    try:
        generation = generate_files(
            image, args.out, args.parts, model=args.model, device=args.device, seed=args.seed,
            steps=args.steps, guidance=args.guidance, top_k=args.top_k, strength=args.strength,
            remove_background=not args.keep_background, extract=extract)
    except (ImageError, ValueError, FileNotFoundError) as error:
        print(f"generate: {error}", file=sys.stderr)
        return 2
    t = generation.timings
    stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in t.items() if stage != "total")
    print(f"{len(generation.parts)} parts -> {args.out} in {t['total']:.2f} s ({stages}); "
          f"labels: " + ", ".join(p.label for p in generation.parts))
    return 0
