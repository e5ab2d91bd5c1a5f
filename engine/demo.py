"""`python -m engine demo`: the main job as it stands (run by `python build.py demo`).

1. Build a small sample of the procedural dataset (every category) and write its
   part-coloured contact sheet and part-count histogram.
2. Image -> parts: the shipped PartRAG bundle on a bundled reference image
   (engine/demo_inputs/chair.png: view 0 of the test-split object chair-1824779566, never
   seen in training), written as `generate` writes it (part GLBs, object.glb, parts.json,
   retrieved.json, preview.png), then built into a Blender scene by the add-on's own scene
   code and saved as asset.blend with a Workbench render, asset.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.data.categories import categories
from engine.data.dataset import build_dataset
from engine.data.preview import write_overview

DEMO_IMAGE = Path(__file__).resolve().parent / "demo_inputs" / "chair.png"
DEMO_PARTS = 7  # the reference chair's seat, back, four legs and stretcher


def run_demo(out: Path, per_category: int = 3, workers: int = 2, model: Path | None = None,
             image: Path = DEMO_IMAGE, parts: int = DEMO_PARTS) -> dict[str, Path]:
    count = per_category * len(categories())
    manifest = build_dataset(out / "dataset", {"train": count}, seed=0, workers=workers)
    print(f"built {count} objects at {manifest['objects_per_second']:.2f} objects/s (4 views each)")
    paths = write_overview(out / "dataset", out, count)
    return {**paths, **image_to_blend(image, out / "generation", parts, model=model)}


def image_to_blend(image: Path, out: Path, parts: int, *, model: Path | None = None,
                   seed: int = 0) -> dict[str, Path]:
    """Generate parts for `image` with the PartRAG bundle `model` (default: the shipped one)
    into `out`, then the .blend and its render; returns the main output paths."""
    from engine.pipelines.cli import generate_files, read_image
    from engine.pipelines.registry import DEFAULT_MODELS
    from engine.render.blend import write_blend

    model = model or DEFAULT_MODELS / "partrag"
    if not (model / "transformer").is_dir():
        raise FileNotFoundError(f"no PartRAG bundle at {model}")
    generation = generate_files(read_image(image), out, parts, model=model, seed=seed)
    t = generation.timings
    print(f"image -> {len(generation.parts)} parts in {t['total']:.1f} s: "
          + ", ".join(p.label for p in generation.parts))
    blend, render = out / "asset.blend", out / "asset.png"
    summary = write_blend(generation.parts, blend, render, asset_id=f"demo-{image.stem}",
                          parameters=generation.params, retrieved=generation.retrieved)
    print(f"Blender scene: {summary['root']} with {len(summary['parts'])} part objects, "
          f"{summary['meshes']} meshes (Blender {summary['blender']})")
    return {"object": out / "object.glb", "preview": out / "preview.png", "blend": blend,
            "render": render}


def add_demo(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the demo (dataset sample + contact sheet, "
                                   "then image -> parts -> .blend)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--per-category", type=int, default=3, help="objects per category")
    parser.add_argument("--model", type=Path, help="PartRAG bundle (default models/partrag)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.per_category < 1:
        raise SystemExit(f"--per-category must be at least 1, got {args.per_category}")
    paths = run_demo(args.out, args.per_category, model=args.model)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
