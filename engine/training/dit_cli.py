"""`python -m engine train dit ...`: the PartRAG generator."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.training.run_arguments import (add_recipe_arguments, add_run_arguments,
                                           run_exported)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `dit` to the `train` command's subcommands."""
    dit = sub.add_parser("dit", help="PartRAG dual-lane DiT with retrieval (stage 1: flow "
                         "matching; stage 2: + HCR loss) on a dataset's latent cache")
    dit.add_argument("--data", type=Path, required=True, help="dataset folder (manifest.json)")
    dit.add_argument("--vae", type=Path, required=True,
                     help="part VAE folder: encodes the training parts, copied into the bundle")
    dit.add_argument("--out", type=Path, required=True,
                     help="run folder: checkpoint, log.json, loss.png, recipe.json")
    dit.add_argument("--stage", type=int, choices=[1, 2], default=1)
    dit.add_argument("--init", type=Path, metavar="BUNDLE",
                     help="start from this bundle's transformer/ and rag/ (stage 2 after stage 1)")
    add_recipe_arguments(dit, "objects")
    dit.add_argument("--limit", type=int, help="first N objects of each split (smoke runs)")
    dit.add_argument("--cache", type=Path, help="latent cache (default DATA/dit_cache)")
    add_run_arguments(dit, "when finished, write the bundle here (e.g. models/partrag)")
    dit.set_defaults(run=run_train_dit)


def run_train_dit(args: argparse.Namespace) -> int:
    from engine.training.dit import load_recipe, train_dit

    return run_exported(args, load_recipe, lambda recipe, config: train_dit(
        args.data, args.vae, args.out, recipe, config, cache=args.cache or args.data / "dit_cache",
        stage=args.stage, init=args.init, export=args.export, device=args.device,
        resume=args.resume, limit=args.limit), f"PartRAG DiT stage {args.stage}")
