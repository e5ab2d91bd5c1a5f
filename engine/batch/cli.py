"""`python -m engine batch INPUT --out DIR`: a folder of images or a manifest -> one asset
folder per image, embedded on this machine by default or on Ray with `--ray`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.batch.ray_executor import DEFAULT_RETRIES
    from engine.pipelines.cli import part_count
    from engine.pipelines.registry import DEFAULT_MODELS

    parser = subparsers.add_parser(
        "batch", help="a folder of images (or a CSV/JSONL manifest) -> one asset folder each, "
                      "resumable")
    parser.add_argument("input", type=Path, help="folder of PNG/JPEG/WebP images, or a .csv / "
                        ".jsonl manifest with an image column and optional name, parts, seed, "
                        "pipeline, steps, guidance, top_k, strength per row")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: DIR/<name>/ per image, DIR/batch.jsonl")
    parser.add_argument("--pipeline", default="partrag",
                        help="generation pipeline: a bundle under --models (default partrag)")
    parser.add_argument("--parts", type=part_count, metavar="N|auto",
                        help="parts per asset (default auto: the nearest library asset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blend", action="store_true",
                        help="also write asset.blend per image, built by the add-on's scene code")
    parser.add_argument("--ray", metavar="ADDRESS|local",
                        help="run on Ray: local starts a cluster on this machine, ADDRESS joins "
                             "one (default: embedded, no Ray)")
    parser.add_argument("--workers", type=int, help="rows computed at once (default: one per "
                        "CPU core, or per GPU on a Ray cluster with GPUs)")
    parser.add_argument("--max-retries", type=int, default=DEFAULT_RETRIES,
                        help=f"Ray: times a row runs again when its worker dies (default "
                             f"{DEFAULT_RETRIES})")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run the rows that failed before again (finished ones are skipped)")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS,
                        help="models folder holding the pipelines' bundles (default models/)")
    parser.add_argument("--device", default="auto", help="embedded: auto, cpu, cuda, ...")
    parser.set_defaults(run=run_batch_command)


def make_executor(args: argparse.Namespace):
    """The embedded executor, or Ray's with --ray."""
    if args.ray:
        from engine.batch.ray_executor import RayExecutor

        return RayExecutor(args.ray, args.models, workers=args.workers,
                           max_retries=args.max_retries, device=args.device)
    from engine.batch.compute import PipelineSet
    from engine.batch.embedded import EmbeddedExecutor

    return EmbeddedExecutor(PipelineSet(args.models, args.device), args.workers)


def run_batch_command(args: argparse.Namespace) -> int:
    from bridge.errors import RequestRefused
    from engine.batch.compute import PipelineSet
    from engine.batch.log import LOG_NAME
    from engine.batch.rows import BatchInputError, read_rows
    from engine.batch.runner import run_batch

    if args.workers is not None and args.workers < 1:
        print(f"batch: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        rows = read_rows(args.input, parts=args.parts, seed=args.seed, pipeline=args.pipeline)
        PipelineSet(args.models).check(args.pipeline)
    except (BatchInputError, RequestRefused) as error:
        print(f"batch: {error}", file=sys.stderr)
        return 2
    executor = make_executor(args)
    print(f"batch: {len(rows)} rows from {args.input} -> {args.out} ({executor.describe()})",
          flush=True)
    summary = run_batch(rows, args.out, executor, retry_failed=args.retry_failed,
                        blend=args.blend)
    print(f"batch: {summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped (done "
          f"before) of {summary.rows} in {summary.seconds:.1f} s "
          f"({summary.images_per_minute:.1f} images/min); manifest {args.out / LOG_NAME}")
    if summary.stopped:
        print("batch: stopped before every row ran; run the same command again to resume",
              file=sys.stderr)
        return 130
    return 1 if summary.failed else 0
