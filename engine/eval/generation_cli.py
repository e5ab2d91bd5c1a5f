"""`python -m engine eval generation ...` (registered by eval/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.files import write_json_atomic, write_text_atomic

PAPER_SAMPLES = 204_800


def add_generation(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generation", help="PartRAG generation: CD, F-Score, part IoU per "
                         "retrieval setting (Tables 4/5 rows)")
    gen.add_argument("--split", default="test", choices=["train", "val", "test"])
    gen.add_argument("--data", type=Path, default=Path("data/parts"), help="dataset folder")
    gen.add_argument("--model", type=Path, default=Path("models/partrag"), help="PartRAG bundle")
    gen.add_argument("--limit", type=int, help="first N objects of the split")
    gen.add_argument("--top-k", type=int, nargs="*", default=[0, 1, 3, 5],
                     help="retrieval settings sampled from noise (0: no retrieval; none: only "
                     "the retrieval-initialised rows)")
    gen.add_argument("--strength", type=float, nargs="*", default=None,
                     help="start σ of the retrieval-initialised top-3 rows (default the "
                          "pipeline's; needs the library beside the bundle)")
    gen.add_argument("--steps", type=int, help="denoising steps (default the pipeline's)")
    gen.add_argument("--guidance", type=float, help="guidance scale (default the pipeline's)")
    gen.add_argument("--samples", type=int, default=PAPER_SAMPLES, help="surface samples for CD/F")
    gen.add_argument("--picture", type=int, default=8, help="objects in the picture (0: none)")
    gen.add_argument("--out", type=Path, default=Path("out/eval_generation"),
                     help="folder for results.md, results.json and generation.png")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    gen.set_defaults(run=run_eval_generation)


def run_eval_generation(args: argparse.Namespace) -> int:
    from engine.eval.generation import (Settings, evaluate_generation, markdown_table,
                                        summarise, write_picture)
    from engine.device import resolve_device
    from engine.pipelines.partrag import DEFAULT_STRENGTH
    from engine.pipelines.registry import load_pipeline

    pipeline = load_pipeline(args.model, resolve_device(args.device))
    resolved = pipeline.resolve(None, args.steps, args.guidance, None, None)
    settings = Settings(resolved["steps"], resolved["guidance"], samples=args.samples)
    rows, kept = evaluate_generation(pipeline, args.data, args.split, settings,
                                     tuple(args.top_k),
                                     (DEFAULT_STRENGTH,) if args.strength is None else args.strength,
                                     args.limit, keep=args.picture)
    table = summarise(rows, args.data, args.split, args.limit)
    text = (f"PartRAG `{args.model}` on `{args.data}` {args.split} "
            f"({table[1]['objects']} objects, {settings.steps} steps, guidance "
            f"{settings.guidance}, {args.samples:,} samples):\n\n{markdown_table(table)}\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "results.md", text)
    write_json_atomic(args.out / "results.json", {"table": table, "objects": rows})
    if kept:
        print(f"picture: {write_picture(kept, args.out / 'generation.png')}")
    return 0


def add_diagnose(sub: argparse._SubParsersAction) -> None:
    diag = sub.add_parser("diagnose", help="why a PartRAG generator damages latents: latent "
                          "statistics, flow loss per σ, denoise-from-truth, σ0 × guidance sweep")
    diag.add_argument("--data", type=Path, default=Path("data/parts"), help="dataset folder")
    diag.add_argument("--model", type=Path, default=Path("models/partrag"), help="PartRAG bundle")
    diag.add_argument("--vae", type=Path, default=Path("models/part_vae"),
                      help="the part VAE the latent cache was made with (as `train dit --vae`)")
    diag.add_argument("--cache", type=Path, help="latent cache (default DATA/dit_cache)")
    diag.add_argument("--split", default="val", choices=["val", "test"])
    diag.add_argument("--limit", type=int, default=12, help="objects denoised from the truth "
                      "and swept")
    diag.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.3, 0.5],
                      help="start σ of denoise-from-truth")
    diag.add_argument("--sweep-limit", type=int, default=6, help="objects of the sweep")
    diag.add_argument("--sweep-strengths", type=float, nargs="*", default=[0.2, 0.5, 0.8])
    diag.add_argument("--sweep-guidance", type=float, nargs="*", default=[1.0, 3.0, 7.0])
    diag.add_argument("--samples", type=int, default=50_000, help="surface samples for CD/F")
    diag.add_argument("--out", type=Path, default=Path("out/diagnose"),
                      help="folder for diagnosis.md and diagnosis.json")
    diag.set_defaults(run=run_diagnose)


def run_diagnose(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np

    from engine.eval import generator_diagnosis as diagnosis
    from engine.eval.generation import Settings, evaluate_generation, summarise
    from engine.eval.vae_eval import object_folders
    from engine.pipelines.partrag import DEFAULT_STEPS, DEFAULT_TOP_K
    from engine.pipelines.registry import load_pipeline
    from engine.training import dit_data
    from engine.training.dit import load_bundle_model

    pipeline = load_pipeline(args.model, "cpu")
    pipeline.extract = replace(pipeline.extract, clean=False)  # what the model makes, unpolished
    cache = args.cache or args.data / "dit_cache"
    options = dit_data.BankOptions(**{k: v for k, v in pipeline.settings.items()
                                      if k in dit_data.BankOptions.__dataclass_fields__})
    objects = {split: dit_data.load_cached(dit_data.build_latent_cache(
        args.data, cache, split, args.vae, options.encoder)) for split in ("train", args.split)}
    report = {"latents": diagnosis.latent_statistics([o.latents for o in objects["train"]],
                                                     pipeline.scale)}
    lat = report["latents"]
    lines = [f"# Generator diagnosis: `{args.model}` on `{args.data}` {args.split}", "",
             f"Part VAE latents over the training cache ({lat['tokens']:,} tokens): std "
             f"{lat['raw']['overall_std']:.2f} (per channel {lat['raw']['std_range'][0]:.2f}–"
             f"{lat['raw']['std_range'][1]:.2f}), channel means up to ±"
             f"{lat['raw']['max_abs_mean']:.2f}; the DiT sees them "
             + ("standardised" if lat["standardised"] else "unscaled")
             + f" (std {lat['seen_by_dit']['overall_std']:.2f}, means up to ±"
             f"{lat['seen_by_dit']['max_abs_mean']:.2f}).", ""]

    bank = dit_data.build_bank(objects["train"], options)
    examples = dit_data.DiTExamples(objects[args.split], bank, pipeline.settings.get("max_k", 5),
                                    dit_data.label_vocabulary(objects["train"]), pipeline.scale)
    report["flow_loss_by_sigma"] = diagnosis.flow_loss_by_sigma(load_bundle_model(args.model),
                                                                examples)
    lines += ["Validation flow loss per σ bucket (top-3 context, conditional):", "",
              "| σ | " + " | ".join(f"{r['sigma'][0]:.1f}–{r['sigma'][1]:.1f}"
                                   for r in report["flow_loss_by_sigma"]) + " |",
              "| --- " * (len(report["flow_loss_by_sigma"]) + 1) + "|",
              "| flow loss | " + " | ".join(f"{r['flow_loss']:.3f}"
                                           for r in report["flow_loss_by_sigma"]) + " |", ""]

    args.out.mkdir(parents=True, exist_ok=True)

    def flush() -> None:  # each section is written as soon as it is measured
        write_text_atomic(args.out / "diagnosis.md", "\n".join(lines) + "\n")
        write_json_atomic(args.out / "diagnosis.json", report)

    flush()
    folders = object_folders(args.data, args.split, args.limit)
    rows = diagnosis.denoise_from_truth(pipeline, folders, [o.latents for o in objects[args.split]],
                                        tuple(args.sigmas), DEFAULT_STEPS, pipeline.default_guidance,
                                        DEFAULT_TOP_K, args.samples)
    report["denoise_from_truth"] = {"objects": rows, "table": diagnosis.mean_rows(rows)}
    gt_debris = float(np.mean([r["gt_debris"] for r in rows if "gt_debris" in r]))
    lines += [f"Denoise from truth ({len(folders)} {args.split} objects, {DEFAULT_STEPS} steps, "
              f"guidance {pipeline.default_guidance:g}, top-{DEFAULT_TOP_K}, {args.samples:,} samples; "
              f"ground-truth debris {gt_debris:.2%}):", "",
              "| start | CD ↓ | F@0.1 ↑ | debris ↓ | empty parts |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['row']} | {r['chamfer']:.4f} | {r['fscore']:.4f} | {r['debris']:.2%} | "
              f"{r['empty_parts']} |" for r in report["denoise_from_truth"]["table"]]
    flush()

    sweep = []
    for guidance in args.sweep_guidance:
        rows, _ = evaluate_generation(pipeline, args.data, args.split,
                                      Settings(DEFAULT_STEPS, guidance, samples=args.samples),
                                      (), tuple(args.sweep_strengths), args.sweep_limit, keep=0)
        for r in summarise(rows, args.data, args.split, args.sweep_limit)[1:]:
            sweep.append({"guidance": guidance, **r})
    report["sweep"] = sweep
    lines += ["", f"σ0 × guidance ({args.sweep_limit} {args.split} objects, top-3 retrieval-"
              f"initialised, {DEFAULT_STEPS} steps; CD / F@0.1 / debris):", "",
              "| guidance | " + " | ".join(dict.fromkeys(r["row"] for r in sweep)) + " |",
              "| --- " * (1 + len(dict.fromkeys(r["row"] for r in sweep))) + "|"]
    for guidance in args.sweep_guidance:
        mine = [r for r in sweep if r["guidance"] == guidance]
        lines.append(f"| {guidance:g} | " + " | ".join(
            f"{r['chamfer']:.4f} / {r['fscore']:.3f} / {r['debris']:.2%}" for r in mine) + " |")
    flush()
    print("\n".join(lines))
    return 0
