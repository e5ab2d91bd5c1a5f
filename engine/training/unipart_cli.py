"""`python -m engine train unipart --stage whole|part ...`: UniPart's two generators."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.training.run_arguments import (add_recipe_arguments, add_run_arguments,
                                           run_exported)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `unipart` to the `train` command's subcommands."""
    from engine.pipelines.registry import DEFAULT_MODELS

    parser = sub.add_parser("unipart", help="UniPart: the whole-level DiT on Geom-Seg latents "
                            "(--stage whole) or the dual-space part DiT (--stage part)")
    parser.add_argument("--stage", choices=["whole", "part"], required=True)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (manifest.json)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder: checkpoint, log.json, loss.png, recipe.json")
    parser.add_argument("--geomseg", type=Path, default=DEFAULT_MODELS / "geomseg_vae",
                        help="Geom-Seg VAE folder: encodes whole objects (default "
                             "models/geomseg_vae)")
    parser.add_argument("--vae", type=Path, default=DEFAULT_MODELS / "part_vae",
                        help="part VAE folder: encodes parts in both spaces (default "
                             "models/part_vae)")
    add_recipe_arguments(parser, "objects (whole) or parts (part)")
    parser.add_argument("--limit", type=int, help="first N objects of each split (smoke runs)")
    parser.add_argument("--cache", type=Path, help="UniPart latent cache (default "
                        "DATA/unipart_cache)")
    parser.add_argument("--dit-cache", type=Path, help="image-token cache shared with the "
                        "PartRAG DiT (default DATA/dit_cache)")
    parser.add_argument("--whole", type=Path, metavar="DIR",
                        help="part stage: the whole stage's export, bundled with the part DiT")
    add_run_arguments(parser, "when finished, write the whole stage's networks here (e.g. "
                      "data/models/unipart/whole), or with the part stage the bundle (e.g. "
                      "models/unipart)")
    parser.set_defaults(run=run_train_unipart)


def run_train_unipart(args: argparse.Namespace) -> int:
    import sys

    from engine.training.unipart import load_recipe, train_unipart_command

    if args.stage == "part" and args.export and not args.whole:
        print("train unipart: the part stage exports the whole bundle; pass the whole stage's "
              "export with --whole DIR", file=sys.stderr)
        return 2
    return run_exported(
        args, lambda name: load_recipe(name, args.stage),
        lambda recipe, config: train_unipart_command(
            args.stage, args.data, args.out, recipe, config, geomseg=args.geomseg,
            part_vae=args.vae, cache=args.cache or args.data / "unipart_cache",
            dit_cache=args.dit_cache or args.data / "dit_cache", whole=args.whole,
            export=args.export,
            device=args.device, resume=args.resume, limit=args.limit),
        f"UniPart {args.stage} DiT")
