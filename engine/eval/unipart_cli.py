"""`python -m engine eval unipart ...` (registered by eval/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.files import write_json_atomic, write_text_atomic


def add_unipart(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("unipart", help="UniPart: CD, F@0.05/0.1 (best of 4 rotations), "
                            "part IoU, ablations (GCS only, ground-truth boxes, no global "
                            "attention, Ẑ alone), automatic part count, beside PartRAG's "
                            "default")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--data", type=Path, default=Path("data/parts"), help="dataset folder")
    parser.add_argument("--model", type=Path, default=Path("models/unipart"),
                        help="UniPart bundle")
    parser.add_argument("--partrag", type=Path, default=Path("models/partrag"),
                        help="PartRAG bundle for the rows beside it (a missing folder: none)")
    parser.add_argument("--ablation", action="append", default=[], metavar="NAME=BUNDLE",
                        help="also score this UniPart bundle's dual-space output as row NAME "
                             "(e.g. one trained with `--config no-global`); repeatable")
    parser.add_argument("--geomseg", type=Path, default=Path("models/geomseg_vae"),
                        help="Geom-Seg VAE that decodes Ẑ alone for its row (a missing folder: "
                             "none)")
    parser.add_argument("--limit", type=int, help="first N objects of the split")
    parser.add_argument("--steps", type=int, default=12, help="denoising steps (both stages)")
    parser.add_argument("--guidance", type=float, help="guidance (default the bundle's)")
    parser.add_argument("--samples", type=int, default=50_000, help="surface samples for CD/F")
    parser.add_argument("--picture", type=int, default=8, help="objects in the picture (0: none)")
    parser.add_argument("--out", type=Path, default=Path("out/eval_unipart"),
                        help="folder for results.md, results.json and unipart.png")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.set_defaults(run=run_eval_unipart)

    cond = sub.add_parser("unipart-conditioning", help="UniPart's part DiT: validation flow loss "
                          "of each lane per σ with its conditions right, swapped or removed "
                          "(does it use Ẑ, X_i and the image?)")
    cond.add_argument("--model", type=Path, default=Path("models/unipart"), help="UniPart bundle")
    cond.add_argument("--data", type=Path, default=Path("data/parts"), help="dataset folder")
    cond.add_argument("--split", default="val", choices=["train", "val", "test"])
    cond.add_argument("--geomseg", type=Path, default=Path("models/geomseg_vae"),
                      help="Geom-Seg VAE the cache was made with")
    cond.add_argument("--vae", type=Path, default=Path("models/part_vae"),
                      help="part VAE the cache was made with")
    cond.add_argument("--cache", type=Path, help="UniPart cache (default DATA/unipart_cache)")
    cond.add_argument("--dit-cache", type=Path, help="image-token cache (default DATA/dit_cache)")
    cond.add_argument("--parts", type=int, default=64, help="validation parts in the batch")
    cond.add_argument("--limit", type=int, help="first N objects of the split")
    cond.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    cond.set_defaults(run=run_unipart_conditioning)


def run_unipart_conditioning(args: argparse.Namespace) -> int:
    from engine.device import resolve_device
    from engine.eval.unipart_conditioning import conditioning_losses, markdown
    from engine.pipelines.registry import load_pipeline
    from engine.training.unipart_data import cached_split

    pipeline = load_pipeline(args.model, resolve_device(args.device))
    objects = cached_split(args.data, args.split, args.geomseg, args.vae,
                           args.cache or args.data / "unipart_cache",
                           args.dit_cache or args.data / "dit_cache", args.limit)
    sigmas, losses = conditioning_losses(pipeline, objects, args.parts)
    print(f"UniPart part DiT `{args.model}`, {args.parts} {args.split} parts, flow loss GCS / NCS "
          f"lane per σ:\n\n{markdown(sigmas, losses)}")
    return 0


def run_eval_unipart(args: argparse.Namespace) -> int:
    import sys

    from engine.device import resolve_device
    from engine.eval.unipart_eval import evaluate_unipart, markdown, summarise, write_picture
    from engine.models.geomseg_vae import GeomSegVAE
    from engine.pipelines.registry import load_pipeline

    device = resolve_device(args.device)
    unipart = load_pipeline(args.model, device)
    partrag = load_pipeline(args.partrag, device) if args.partrag.is_dir() else None
    guidance = unipart.default_guidance if args.guidance is None else args.guidance
    ablations = {}
    for spec in args.ablation:
        name, sep, folder = spec.rpartition("=")
        if not sep or not name:
            print(f"eval unipart: --ablation wants NAME=BUNDLE, got {spec!r}", file=sys.stderr)
            return 2
        ablations[name] = load_pipeline(Path(folder), device)
    geomseg = (GeomSegVAE.from_pretrained(args.geomseg).float().to(device)
               if args.geomseg.is_dir() else None)
    rows, kept = evaluate_unipart(unipart, partrag, args.data, args.split, args.steps, guidance,
                                  args.limit, args.samples, args.picture, ablations=ablations,
                                  geomseg=geomseg)
    table, count = summarise(rows)
    text = (f"UniPart `{args.model}` on `{args.data}` {args.split} ({table[0]['objects']} "
            f"objects, {args.steps} steps, guidance {guidance}, {args.samples:,} samples, best "
            f"of 4 rotations about the up axis):\n\n{markdown(table, count)}\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "results.md", text)
    write_json_atomic(args.out / "results.json", {"table": table, "count": count,
                                                  "objects": rows})
    if kept:
        print(f"picture: {write_picture(kept, args.out / 'unipart.png')}")
    return 0
