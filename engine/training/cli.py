"""`python -m engine train ...`: train a network into a run folder, optionally export it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a network (resumable run folders)")
    sub = parser.add_subparsers(dest="train_command", required=True)

    vae = sub.add_parser("vae", help="part VAE or Geom-Seg VAE on a dataset's cached examples")
    vae.add_argument("--kind", choices=["part", "geomseg"], required=True,
                     help="part: one part per example (object frame); geomseg: whole objects "
                     "with part codes")
    vae.add_argument("--data", type=Path, required=True, help="dataset folder (manifest.json)")
    vae.add_argument("--out", type=Path, required=True,
                     help="run folder: checkpoint, log.json, loss.png, recipe.json")
    vae.add_argument("--config", default="small",
                     help="recipe name (small, tiny) or a JSON file with the recipe's keys")
    vae.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    vae.add_argument("--batch", type=int, help="examples per step (default: the recipe's)")
    vae.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    vae.add_argument("--seed", type=int, help="seed of the initial weights and all batches")
    vae.add_argument("--resume", action="store_true", help="continue the run in --out")
    vae.add_argument("--init", type=Path, metavar="VAE_DIR",
                     help="start from this VecSet VAE folder (geomseg: the part VAE to fine-tune)")
    vae.add_argument("--export", type=Path, metavar="DIR",
                     help="when finished, save the EMA model here (float16 if harmless)")
    vae.add_argument("--cache", type=Path, help="example cache (default DATA/vae_cache)")
    vae.add_argument("--workers", type=int, default=2, help="processes building the cache")
    vae.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    vae.add_argument("--threads", type=int,
                     help="CPU threads for torch (default torch's; 1 is steadier when another "
                     "job shares the cores)")
    vae.set_defaults(run=run_train_vae)


def run_train_vae(args: argparse.Namespace) -> int:
    import torch

    from engine.training.vae import load_recipe, train_vae

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.config)
    config = recipe.train_config(steps=args.steps, batch_size=args.batch, lr=args.lr,
                                 seed=args.seed)
    result, exported = train_vae(args.kind, args.data, args.out, recipe, config,
                                 cache=args.cache or args.data / "vae_cache", init=args.init,
                                 export=args.export, device=args.device, resume=args.resume,
                                 workers=args.workers)
    if not result.finished:
        print(f"stopped at step {result.step} of {config.steps}; continue with the same "
              f"command plus --resume", file=sys.stderr)
        return INTERRUPTED
    val = result.log["val"][-1] if result.log["val"] else {}
    print(f"{args.kind} VAE: {result.step} steps, final val (EMA) "
          + ", ".join(f"{k} {v:.4g}" for k, v in val.items() if k != "step")
          + f" -> {args.out}")
    if exported:
        print(f"exported to {args.export}: " + json.dumps(exported))
    return 0
