"""Arguments and run reports shared by every `python -m engine train ...` command."""

from __future__ import annotations

import argparse
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
