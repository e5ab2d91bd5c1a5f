"""`python -m engine generate IMAGE --parts N ...`: one image -> part meshes on disk."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.pipelines.serving import DEFAULT_MODELS

    parser = subparsers.add_parser("generate", help="reference image -> part meshes (PartRAG)")
    parser.add_argument("image", type=Path, help="PNG/JPEG/WebP; RGBA, or RGB on a uniform "
                        "background (removed unless --keep-background)")
    parser.add_argument("--parts", type=int, required=True, help="number of parts to generate")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODELS / "partrag",
                        help="PartRAG bundle folder (default models/partrag)")
    parser.add_argument("--top-k", type=int, help="retrieved exemplars (default 3; 0: none)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 12)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-background", action="store_true",
                        help="treat the whole RGB image as the object (no background removal)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from engine.pipelines.image_prep import ImageError
    from engine.pipelines.outputs import write_generation
    from engine.pipelines.partrag import (DEFAULT_GUIDANCE, DEFAULT_STEPS, DEFAULT_TOP_K,
                                          PartRAGPipeline)
    from engine.training.loop import resolve_device

    if not (args.model / "transformer").is_dir():
        print(f"no PartRAG bundle at {args.model} (train one with `python -m engine train dit "
              f"... --export {args.model}`)", file=sys.stderr)
        return 2
    try:
        image = np.asarray(Image.open(args.image))
    except (OSError, ValueError) as error:
        print(f"cannot read {args.image}: {error}", file=sys.stderr)
        return 2
    if image.dtype != np.uint8 or image.ndim != 3:
        image = np.asarray(Image.open(args.image).convert("RGBA"))
    pipeline = PartRAGPipeline(args.model, resolve_device(args.device))
    try:
        generation = pipeline(
            image, args.parts, seed=args.seed,
            steps=args.steps or DEFAULT_STEPS,
            guidance=DEFAULT_GUIDANCE if args.guidance is None else args.guidance,
            top_k=DEFAULT_TOP_K if args.top_k is None else args.top_k,
            remove_background=not args.keep_background)
    except (ImageError, ValueError) as error:
        print(f"generate: {error}", file=sys.stderr)
        return 2
    write_generation(generation, args.out)
    t = generation.timings
    print(f"{len(generation.parts)} parts -> {args.out} in {t['total']:.2f} s (encode "
          f"{t['encode']:.2f}, retrieve {t['retrieve']:.2f}, denoise {t['denoise']:.2f}, "
          f"decode {t['decode']:.2f}); labels: "
          + ", ".join(p.label for p in generation.parts))
    return 0
