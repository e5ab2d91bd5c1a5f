"""`python -m engine train vae|retriever ...`: the VAEs and the HCR retriever into a run
folder, optionally exported (`train dit` is engine/training/dit_cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.training.run_arguments import (INTERRUPTED, add_run_arguments,
                                           add_recipe_arguments, run_exported,
                                           recipe_and_config, report_run)


def run_train_vae(args: argparse.Namespace) -> int:
    from engine.training.vae import load_recipe, train_vae

    return run_exported(args, load_recipe, lambda recipe, config: train_vae(
        args.kind, args.data, args.out, recipe, config, cache=args.cache or args.data / "vae_cache",
        init=args.init, export=args.export, device=args.device, resume=args.resume,
        workers=args.workers), f"{args.kind} VAE")


def run_train_retriever(args: argparse.Namespace) -> int:
    import re

    from engine.retrieval.encoders import load_encoder
    from engine.retrieval.shape import PartEncoder
    from engine.training.retriever import build_features, export_model, load_recipe, train_retriever
    from engine.device import resolve_device
    from engine.training.model_card import retrain_command

    recipe, config = recipe_and_config(args, load_recipe)
    if args.queue is not None:
        recipe.model["queue_size"] = args.queue
    device = resolve_device(args.device)
    cache = args.cache or args.data / "retrieval_cache" / re.sub(r"[^\w.-]+", "_", args.encoder)
    encoder = load_encoder(args.encoder, device)
    parts = PartEncoder(args.vae, device)
    features = {split: build_features(args.data, cache, split, encoder, parts, args.limit)
                for split in ("train", "val")}
    del encoder, parts
    result = train_retriever(features["train"], features["val"], args.out, recipe, config,
                             args.encoder, device=str(device), resume=args.resume)
    if not report_run(result, config, "HCR retriever", args.out):
        return INTERRUPTED
    if args.export:
        export_model(result.ema.model, args.export, config, result, args.data, retrain_command())
        print(f"exported to {args.export}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vae` and `retriever` to the `train` command's subcommands."""
    vae = sub.add_parser("vae", help="part VAE or Geom-Seg VAE on a dataset's cached examples")
    vae.add_argument("--kind", choices=["part", "geomseg"], required=True,
                     help="part: one part per example (object frame); geomseg: whole objects "
                     "with part codes")
    vae.add_argument("--data", type=Path, required=True, help="dataset folder (manifest.json)")
    vae.add_argument("--out", type=Path, required=True,
                     help="run folder: checkpoint, log.json, loss.png, recipe.json")
    add_recipe_arguments(vae, "examples")
    vae.add_argument("--init", type=Path, metavar="VAE_DIR",
                     help="start from this VecSet VAE folder (geomseg: the part VAE to fine-tune, or a "
                     "Geom-Seg VAE folder to continue)")
    vae.add_argument("--cache", type=Path, help="example cache (default DATA/vae_cache)")
    vae.add_argument("--workers", type=int, default=2, help="processes building the cache")
    add_run_arguments(vae, "when finished, save the EMA model here (float16 if harmless)")
    vae.set_defaults(run=run_train_vae)

    ret = sub.add_parser("retriever", help="HCR heads (PartRAG retrieval) on a dataset's renders")
    ret.add_argument("--data", type=Path, required=True, help="dataset folder (manifest.json)")
    ret.add_argument("--vae", type=Path, required=True, metavar="VAE_DIR",
                     help="part VAE folder whose latents are the 3D side")
    ret.add_argument("--out", type=Path, required=True,
                     help="run folder: checkpoint, log.json, loss.png, recipe.json")
    ret.add_argument("--encoder", default="efficientnet-lite0",
                     help="frozen image encoder: efficientnet-lite0, dinov2:DIR_OR_ID, "
                     "clip:DIR_OR_ID")
    add_recipe_arguments(ret, "objects", config_help="recipe name (small, tiny) or a JSON file "
                         "with keys model, train")
    ret.add_argument("--queue", type=int,
                     help="momentum queue size per level (default: the recipe's; paper 65536)")
    ret.add_argument("--limit", type=int, help="first N objects of each split (smoke runs)")
    ret.add_argument("--cache", type=Path,
                     help="feature cache folder (default DATA/retrieval_cache/<encoder>)")
    add_run_arguments(ret, "when finished, save the EMA heads here with a model card")
    ret.set_defaults(run=run_train_retriever)
