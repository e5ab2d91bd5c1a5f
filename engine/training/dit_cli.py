"""`python -m engine train dit ...`: the PartRAG generator (registered by training/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

INTERRUPTED = 130


def add_dit(sub: argparse._SubParsersAction) -> None:
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
    dit.add_argument("--config", default="small",
                     help="recipe name (small, tiny) or a JSON file with the recipe's keys")
    dit.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    dit.add_argument("--batch", type=int, help="objects per step (default: the recipe's)")
    dit.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    dit.add_argument("--seed", type=int, help="seed of the initial weights and all batches")
    dit.add_argument("--limit", type=int, help="first N objects of each split (smoke runs)")
    dit.add_argument("--resume", action="store_true", help="continue the run in --out")
    dit.add_argument("--export", type=Path, metavar="DIR",
                     help="when finished, write the bundle here (e.g. models/partrag)")
    dit.add_argument("--cache", type=Path, help="latent cache (default DATA/dit_cache)")
    dit.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    dit.add_argument("--threads", type=int, help="CPU threads for torch")
    dit.set_defaults(run=run_train_dit)


def run_train_dit(args: argparse.Namespace) -> int:
    import torch

    from engine.training.dit import load_recipe, train_dit

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.config)
    config = recipe.train_config(steps=args.steps, batch_size=args.batch, lr=args.lr,
                                 seed=args.seed)
    result, exported = train_dit(args.data, args.vae, args.out, recipe, config,
                                 cache=args.cache or args.data / "dit_cache", stage=args.stage,
                                 init=args.init, export=args.export, device=args.device,
                                 resume=args.resume, limit=args.limit)
    if not result.finished:
        print(f"stopped at step {result.step} of {config.steps}; continue with the same "
              f"command plus --resume", file=sys.stderr)
        return INTERRUPTED
    val = result.log["val"][-1] if result.log["val"] else {}
    print(f"PartRAG DiT stage {args.stage}: {result.step} steps, final val (EMA) "
          + ", ".join(f"{k} {v:.4g}" for k, v in val.items() if k != "step") + f" -> {args.out}")
    if exported:
        print(f"exported to {args.export}: " + json.dumps(exported))
    return 0
