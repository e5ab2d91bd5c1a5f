"""Arguments and run reports shared by every `python -m engine train ...` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C
RECIPE_HELP = "recipe name (small, tiny) or a JSON file with the recipe's keys"


def add_recipe_arguments(parser: argparse.ArgumentParser, per_step: str,
                         config_help: str = RECIPE_HELP) -> None:
    """--config and the recipe's overrides (--steps, --batch, --lr, --seed); `per_step`
    names what a batch counts."""
    parser.add_argument("--config", default="small", help=config_help)
    parser.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    parser.add_argument("--batch", type=int, help=f"{per_step} per step (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--seed", type=int, help="seed of the initial weights and all batches")


def add_run_arguments(parser: argparse.ArgumentParser, export_help: str) -> None:
    """--resume, --export and where to compute."""
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--export", type=Path, metavar="DIR", help=export_help)
    add_device_arguments(parser)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for torch (default torch's; 1 is steadier when another "
                        "job shares the cores)")


def recipe_and_config(args: argparse.Namespace, load_recipe):
    """Apply --threads, load --config and its TrainConfig with the command line's overrides."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.config)
    return recipe, recipe.train_config(steps=args.steps, batch_size=args.batch, lr=args.lr,
                                       seed=args.seed)


def report_run(result, config, title: str, out: Path) -> bool:
    """Print how the run ended; False when it was stopped early (exit with INTERRUPTED)."""
    if not result.finished:
        print(f"stopped at step {result.step} of {config.steps}; continue with the same "
              f"command plus --resume", file=sys.stderr)
        return False
    print(f"{title}: {result.step} steps, final val (EMA) {result.val_summary} -> {out}")
    return True


def run_exported(args: argparse.Namespace, load_recipe, train, title: str) -> int:
    """A `train` command whose `train(recipe, config)` returns (result, exported): load the
    recipe, train, report the run and its export; the command's exit status."""
    recipe, config = recipe_and_config(args, load_recipe)
    result, exported = train(recipe, config)
    if not report_run(result, config, title, args.out):
        return INTERRUPTED
    if exported:
        print(f"exported to {args.export}: " + json.dumps(exported))
    return 0
