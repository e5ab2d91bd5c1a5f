"""`python -m engine eval generation ...` (registered by eval/cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PAPER_SAMPLES = 204_800


def add_generation(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generation", help="PartRAG generation: CD, F-Score, part IoU per "
                         "retrieval setting (Tables 4/5 rows)")
    gen.add_argument("--split", default="test", choices=["train", "val", "test"])
    gen.add_argument("--data", type=Path, default=Path("data/parts"), help="dataset folder")
    gen.add_argument("--model", type=Path, default=Path("models/partrag"), help="PartRAG bundle")
    gen.add_argument("--limit", type=int, help="first N objects of the split")
    gen.add_argument("--top-k", type=int, nargs="+", default=[0, 1, 3, 5],
                     help="retrieval settings to evaluate (0: no retrieval)")
    gen.add_argument("--strength", type=float, nargs="*", default=None,
                     help="start σ of the retrieval-initialised top-3 rows (default the "
                          "pipeline's; needs the library beside the bundle)")
    gen.add_argument("--steps", type=int, help="denoising steps (default the pipeline's)")
    gen.add_argument("--guidance", type=float, help="guidance scale (default the pipeline's)")
    gen.add_argument("--samples", type=int, default=PAPER_SAMPLES, help="surface samples for CD/F")
    gen.add_argument("--picture", type=int, default=8, help="objects in the picture (0: none)")
    gen.add_argument("--out", type=Path, default=Path("out/eval_generation"),
                     help="folder for results.md, results.json and generation.png")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    gen.set_defaults(run=run_eval_generation)


def run_eval_generation(args: argparse.Namespace) -> int:
    from engine.eval.generation import (Settings, evaluate_generation, markdown_table,
                                        summarise, write_picture)
    from engine.pipelines.partrag import (DEFAULT_GUIDANCE, DEFAULT_STEPS, DEFAULT_STRENGTH,
                                          PartRAGPipeline, installed_library)
    from engine.training.loop import resolve_device

    pipeline = PartRAGPipeline(args.model, resolve_device(args.device),
                               library=installed_library(args.model))
    settings = Settings(args.steps or DEFAULT_STEPS,
                        DEFAULT_GUIDANCE if args.guidance is None else args.guidance,
                        samples=args.samples)
    rows, kept = evaluate_generation(pipeline, args.data, args.split, settings,
                                     tuple(args.top_k),
                                     (DEFAULT_STRENGTH,) if args.strength is None else args.strength,
                                     args.limit, keep=args.picture)
    table = summarise(rows, args.data, args.split, args.limit)
    text = (f"PartRAG `{args.model}` on `{args.data}` {args.split} "
            f"({table[1]['objects']} objects, {settings.steps} steps, guidance "
            f"{settings.guidance}, {args.samples:,} samples):\n\n{markdown_table(table)}\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps({"table": table, "objects": rows}, indent=1))
    if kept:
        print(f"picture: {write_picture(kept, args.out / 'generation.png')}")
    return 0
