"""`python -m engine data ...`: build a dataset, draw its contact sheet."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.data.dataset import BuildOptions, build_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="procedural part dataset")
    sub = data.add_subparsers(dest="data_command", required=True)

    build = sub.add_parser("build", help="generate, filter, render and sample objects (resumable)")
    build.add_argument("--out", type=Path, required=True, help="dataset folder")
    for split, default in (("train", 3000), ("val", 500), ("test", 600)):
        build.add_argument(f"--{split}", type=int, default=default, help=f"{split} objects (default {default})")
    build.add_argument("--views", type=int, default=4, help="rendered views per object")
    build.add_argument("--size", type=int, default=256, help="image side in pixels")
    build.add_argument("--samples", type=int, default=BuildOptions.samples, help="surface samples per object")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--workers", type=int, default=2, help="parallel processes")
    build.set_defaults(run=run_build)

    sheet = sub.add_parser("sheet", help="contact sheet and part-count histogram of a dataset")
    sheet.add_argument("dataset", type=Path)
    sheet.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    sheet.add_argument("--count", type=int, default=54, help="objects on the sheet")
    sheet.set_defaults(run=run_sheet)


def run_build(args: argparse.Namespace) -> int:
    minimum = {"train": 0, "val": 0, "test": 0, "views": 1, "size": 16, "samples": 1, "workers": 1}
    for name, least in minimum.items():
        if getattr(args, name) < least:
            raise SystemExit(f"--{name} must be at least {least}, got {getattr(args, name)}")
    options = BuildOptions(views=args.views, image_size=args.size, samples=args.samples)
    manifest = build_dataset(args.out, {"train": args.train, "val": args.val, "test": args.test},
                             seed=args.seed, options=options, workers=args.workers)
    total = sum(len(v) for v in manifest["splits"].values())
    print(f"{total} objects in {manifest['build_seconds']:.1f} s: "
          f"{manifest['objects_per_second']:.2f} objects/s with {args.views} views each "
          f"({args.workers} workers) -> {args.out / 'manifest.json'}")
    return 0


def run_sheet(args: argparse.Namespace) -> int:
    from engine.data.preview import write_overview

    paths = write_overview(args.dataset, args.out, args.count)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=1))
    return 0


def print_bench_data(per_category: int = 2, workers: int = 2) -> None:
    """Build throughput with 4 views per object, start-up of the workers included."""
    import tempfile

    from engine.data.categories import categories

    count = per_category * len(categories())
    with tempfile.TemporaryDirectory(prefix="partsmith-bench-") as tmp:
        manifest = build_dataset(Path(tmp), {"train": count}, seed=1234, workers=workers)
    print(f"dataset build: {count} objects x 4 views (256², RGBA + mask + 20,480 surface samples) "
          f"in {manifest['build_seconds']:.1f} s = {manifest['objects_per_second']:.2f} objects/s "
          f"on {workers} workers, start-up included")
