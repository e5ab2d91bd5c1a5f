"""`python -m engine eval ...`: figures of trained networks. Only argparse at import time;
the evaluation code (torch) loads when a command runs."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from engine.files import write_json_atomic

PAPER_SAMPLES = 204_800  # engine.geometry.metrics.PAPER_SAMPLES, without importing scipy here


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate trained networks")
    sub = parser.add_subparsers(dest="eval_command", required=True)
    from engine.eval.editing_cli import add_editing
    from engine.eval.generation_cli import add_diagnose, add_generation
    from engine.eval.unipart_cli import add_unipart

    add_generation(sub)
    add_unipart(sub)
    add_diagnose(sub)
    add_editing(sub)
    vae = sub.add_parser("vae", help="part VAE reconstruction (CD, F-Score) and Geom-Seg figures")
    vae.add_argument("--split", default="test", choices=["train", "val", "test"])
    vae.add_argument("--data", type=Path, default=Path("data/parts"), help="dataset folder")
    vae.add_argument("--model", type=Path, default=Path("models/part_vae"), help="part VAE folder")
    vae.add_argument("--geomseg", type=Path, help="also evaluate this Geom-Seg VAE folder")
    vae.add_argument("--limit", type=int, help="first N objects of the split")
    # Extraction defaults (None) are engine.eval.vae_eval.ExtractOptions's.
    vae.add_argument("--resolution", type=int,
                     help="extraction grid, the coarse grid times a power of two (default 256)")
    vae.add_argument("--coarse", type=int,
                     help="dense coarse grid of the hierarchical extractor (default 32)")
    vae.add_argument("--lipschitz", type=float,
                     help="extractor's bound on the field's slope; larger keeps thinner parts "
                     "and costs queries (default 150)")
    vae.add_argument("--samples", type=int, default=PAPER_SAMPLES, help="surface samples for CD/F")
    vae.add_argument("--sheet", type=int, default=8, help="objects on the comparison sheet (0: none)")
    vae.add_argument("--timing-parts", type=int, default=2,
                     help="parts timed with dense vs hierarchical extraction (0: none)")
    vae.add_argument("--timing-resolutions", type=int, nargs="+", default=[128, 256],
                     help="final grid resolutions of the extraction timings")
    vae.add_argument("--out", type=Path, default=Path("out/eval_vae"),
                     help="folder for results.json and the comparison sheet")
    vae.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    vae.set_defaults(run=run_eval_vae)

    ret = sub.add_parser("retrieval", help="part library retrieval: object recall, part "
                         "precision, latency, query sheet")
    ret.add_argument("--split", default="test", choices=["train", "val", "test"])
    ret.add_argument("--data", type=Path, default=Path("data/parts"), help="dataset folder")
    ret.add_argument("--library", type=Path, default=Path("models/library"))
    ret.add_argument("--retriever", type=Path, metavar="HCR_DIR",
                     help="also evaluate this HCR retriever's space")
    ret.add_argument("--limit", type=int, help="first N objects of the split")
    ret.add_argument("--out", type=Path, default=Path("out/eval_retrieval"),
                     help="folder for results.json")
    ret.add_argument("--sheet", type=Path, default=Path("docs/retrieval_queries.png"),
                     help="picture of 8 queries with their top-3 assets")
    ret.add_argument("--threads", type=int, help="CPU threads for torch (default torch's)")
    ret.set_defaults(run=run_eval_retrieval)


def run_eval_vae(args: argparse.Namespace) -> int:
    from engine.eval.vae_eval import (ExtractOptions, evaluate_geomseg, evaluate_part_vae,
                                      object_folders, summarise, write_comparison_sheet)
    from engine.models.vecset_vae import VecSetVAE
    from engine.device import resolve_device

    import torch

    device = resolve_device(args.device)
    given = {"resolution": args.resolution, "coarse_resolution": args.coarse,
             "lipschitz": args.lipschitz}
    options = ExtractOptions(**{k: v for k, v in given.items() if v is not None})
    folders = object_folders(args.data, args.split, args.limit)
    vae = VecSetVAE.from_pretrained(args.model).to(device)
    results, kept = evaluate_part_vae(vae, folders, options, args.samples, keep=args.sheet)
    summary = summarise(results)
    print(f"part VAE {args.model} on {args.split} ({summary['objects']} objects, "
          f"{options.resolution}^3, {args.samples:,} samples): CD {summary['chamfer']:.4f}, "
          f"F@0.1 {summary['fscore']:.4f}; failed objects {summary['failed']}, empty parts "
          f"{summary['empty_parts']}; debris {summary['debris']:.2%} (ground truth "
          f"{summary['gt_debris']:.2%}); {summary['seconds_per_object']:.1f} s/object")
    report = {"part_vae": summary, "objects": [asdict(r) for r in results]}
    if args.timing_parts:
        from engine.eval.vae_eval import extraction_timings

        report["extraction"] = extraction_timings(vae, folders, args.timing_parts,
                                                  tuple(args.timing_resolutions),
                                                  options)
        print(f"extraction per part, {torch.get_num_threads()} threads (dense | hierarchical "
              f"from {options.coarse_resolution}^3):")
        for row in report["extraction"]:
            print(f"  {row['resolution']}^3 {row['part']}: dense {row['dense_seconds']:.2f} s "
                  f"{row['dense_queries']:,} queries | hierarchical "
                  f"{row['hierarchical_seconds']:.2f} s {row['hierarchical_queries']:,} queries "
                  f"| CD between them {row['chamfer_dense_vs_hierarchical']:.5f}")
    if args.geomseg:
        from engine.models.geomseg_vae import GeomSegVAE

        model = GeomSegVAE.from_pretrained(args.geomseg).to(device)
        figures = evaluate_geomseg(model, folders, options, args.samples)
        print(f"Geom-Seg VAE {args.geomseg}: latent part assignment accuracy "
              f"{figures['accuracy']:.4f}, mIoU {figures['miou']:.4f}; whole-object geometry "
              f"CD {figures['chamfer']:.4f}, F@0.1 {figures['fscore']:.4f}")
        report["geomseg"] = figures
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "results.json", report)
    if kept:
        print(f"comparison sheet: {write_comparison_sheet(kept, args.out / 'reconstructions.png')}")
    return 0


def run_eval_retrieval(args: argparse.Namespace) -> int:
    import torch

    from engine.retrieval.encoders import DEFAULT_ENCODER, load_encoder
    from engine.retrieval.evaluate import evaluate_space, latency, load_queries, query_sheet
    from engine.retrieval.hcr import HCR
    from engine.retrieval.library import PartLibrary
    from engine.retrieval.search import Searcher

    if args.threads:
        torch.set_num_threads(args.threads)
    library = PartLibrary.load(args.library)
    queries = load_queries(args.data, args.split, args.limit)
    retriever = HCR.from_pretrained(args.retriever) if args.retriever else None
    encoders = {key: load_encoder(key) for key in library.encoders}
    if retriever and retriever.config.encoder not in encoders:
        encoders[retriever.config.encoder] = load_encoder(retriever.config.encoder)
    searchers = [Searcher(library, encoders[key], space=key) for key in library.encoders]
    if retriever:
        searchers.append(Searcher(library, encoders[retriever.config.encoder], retriever))
    rows = [evaluate_space(s, s.encoder, queries) for s in searchers]
    objects = len({q.name for q in queries})
    print(f"retrieval on {args.split} ({objects} objects, {len(queries)} views) from "
          f"{args.library} ({len(library)} assets, {library.num_parts} parts)")
    print("| features | object R@1 | object R@5 | part P@5 (mask) | part P@5 (no mask) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        free = row.get("maskfree_part_precision@5")
        print(f"| {row['space']} | {row['object_recall@1']:.3f} | {row['object_recall@5']:.3f} "
              f"| {row['part_precision@5']:.3f} | {'-' if free is None else f'{free:.3f}'} |")
    default = encoders.get(DEFAULT_ENCODER) or load_encoder(DEFAULT_ENCODER)
    dims = [default.token_dim] + ([retriever.config.embed_dim] if retriever else [])
    timing = latency(default, args.library, dims)
    searches = ", ".join(f"{ms:.3f} ms ({space})" for space, ms in timing["search_ms"].items())
    print(f"latency: encode one image with {timing['encoder']} {timing['encode_ms']:.1f} ms; "
          f"top-3 among {timing['search_assets']:,} assets {searches}; library load "
          f"({timing['library_assets']} assets) {timing['load_ms']:.1f} ms")
    best = searchers[-1]
    print(f"query sheet ({best.name}): {query_sheet(best, queries, args.sheet)}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "results.json", {"rows": rows, "latency": timing})
    return 0
