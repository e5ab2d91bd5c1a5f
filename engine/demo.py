"""`python -m engine demo`: the main job as it stands (run by `python build.py demo`).

Today: build a small sample of the procedural dataset (every category) and write its
part-coloured contact sheet and part-count histogram.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.data.categories import categories
from engine.data.dataset import build_dataset
from engine.data.preview import write_overview


def run_demo(out: Path, per_category: int = 3, workers: int = 2) -> dict[str, Path]:
    count = per_category * len(categories())
    manifest = build_dataset(out / "dataset", {"train": count}, seed=0, workers=workers)
    print(f"built {count} objects at {manifest['objects_per_second']:.2f} objects/s (4 views each)")
    return write_overview(out / "dataset", out, count)


def add_demo(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the demo (dataset sample + contact sheet)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--per-category", type=int, default=3, help="objects per category")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.per_category < 1:
        raise SystemExit(f"--per-category must be at least 1, got {args.per_category}")
    paths = run_demo(args.out, args.per_category)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
