"""`python -m engine library build|add|search|info`: the part library from the command line.
Only argparse at import time; torch, FAISS and the encoders load when a command runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_LIBRARY = Path("models/library")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("library", help="build, extend, search and inspect the part "
                                   "library")
    sub = parser.add_subparsers(dest="library_command", required=True)

    build = sub.add_parser("build", help="choose exemplars from a rendered dataset (spherical "
                           "k-means medoids) and write the library")
    build.add_argument("--data", type=Path, required=True, help="dataset folder (manifest.json)")
    build.add_argument("--vae", type=Path, required=True, metavar="VAE_DIR",
                       help="part VAE folder for the parts' latents")
    build.add_argument("--out", type=Path, default=DEFAULT_LIBRARY,
                       help=f"library folder (default {DEFAULT_LIBRARY})")
    build.add_argument("--encoder", action="append", metavar="SPEC",
                       help="image encoder whose embeddings to store (repeatable; the first "
                       "one selects the exemplars): efficientnet-lite0 (default), "
                       "dinov2:DIR_OR_ID, clip:DIR_OR_ID")
    build.add_argument("--size", type=int, default=1236, help="assets to keep (default 1236)")
    build.add_argument("--split", default="train", choices=["train", "val", "test"])
    build.add_argument("--limit", type=int, help="first N candidates of the split (smoke runs)")
    build.add_argument("--seed", type=int, default=0, help="k-means seed")
    build.add_argument("--stored-views", type=int, default=1, metavar="N",
                       help="views (and masks) kept per asset, the first N; embeddings use all "
                       "of them either way, the thumbnail is always kept (default 1: the view "
                       "retrieval conditioning reads)")
    _common(build)
    build.set_defaults(run=reporting(run_build))

    add = sub.add_parser("add", help="import multi-part GLB/glTF (one node per part) or OBJ "
                         "(one group per part) files, or folders of them, into a library "
                         "(bad files are skipped with their reason; an interrupted add resumes)")
    add.add_argument("files", type=Path, nargs="+", help="files or folders to import")
    add.add_argument("--library", type=Path, default=DEFAULT_LIBRARY)
    add.add_argument("--category", help="category of the assets (default: each file's name)")
    add.add_argument("--label", action="append", default=[], metavar="NAME=LABEL",
                     help="label of the node/group NAME (repeatable; default: from the name)")
    add.add_argument("--vae", type=Path, metavar="VAE_DIR",
                     help="part VAE folder (default: the one the library was built with)")
    _common(add)
    add.set_defaults(run=reporting(run_add))

    search = sub.add_parser("search", help="query a library")
    search.add_argument("--library", type=Path, default=DEFAULT_LIBRARY)
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", type=Path, help="query image (PNG/JPEG; RGBA alpha = object)")
    query.add_argument("--text", help="part label or text (CLIP text when the library has CLIP "
                       "embeddings, else label match)")
    query.add_argument("--asset", help="an asset id of the library: nearest parts to its --part")
    search.add_argument("--mask", type=Path, help="with --image: part mask image (nonzero = part,"
                        " or a part-index mask with --part)")
    search.add_argument("--part", type=int, help="part index (in --mask, or of --asset)")
    search.add_argument("--level", choices=["object", "part"], default="object",
                        help="with --image and no mask: whole objects, or parts through the "
                        "retriever's learned part queries")
    search.add_argument("--retriever", type=Path, metavar="HCR_DIR",
                        help="search in this HCR retriever's space (image -> 3D)")
    search.add_argument("--space", help="encoder key of the library whose features to search "
                        "(default: the library's first; ignored with --retriever)")
    search.add_argument("--k", type=int, default=3, help="hits to return (default 3)")
    search.add_argument("--json", action="store_true", help="print the hits as JSON")
    search.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    search.set_defaults(run=reporting(run_search))

    bank = sub.add_parser("bank", help="make a PartRAG bundle retrieve from this library "
                          "(rebuilds its rag/bank.npz from the library's assets)")
    bank.add_argument("--library", type=Path, default=DEFAULT_LIBRARY)
    bank.add_argument("--model", type=Path, required=True, help="PartRAG bundle folder")
    bank.set_defaults(run=reporting(run_bank))

    info = sub.add_parser("info", help="summarise a library")
    info.add_argument("library", type=Path, nargs="?", default=DEFAULT_LIBRARY)
    info.set_defaults(run=reporting(run_info))


def reporting(run):
    """Bad input (unknown asset, unreadable file, missing encoder weights, ...) ends the
    command with its message and status 2 instead of a traceback."""
    def wrapped(args: argparse.Namespace) -> int:
        from engine.retrieval.encoders import EncoderUnavailable

        try:
            return run(args)
        except (ValueError, FileNotFoundError, EncoderUnavailable) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return wrapped


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default torch's)")


def _setup(args):
    import torch

    from engine.device import resolve_device

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def run_build(args: argparse.Namespace) -> int:
    from engine.retrieval.builder import build_library
    from engine.retrieval.encoders import load_encoder
    from engine.retrieval.shape import PartEncoder

    device = _setup(args)
    encoders = [load_encoder(spec, device) for spec in (args.encoder or ["efficientnet-lite0"])]
    summary = build_library(args.data, args.out, encoders, PartEncoder(args.vae, device),
                            args.size, args.split, args.limit, args.seed,
                            stored_views=args.stored_views)
    print(f"library {args.out}: {summary['assets']} assets chosen from {summary['candidates']} "
          f"by {summary['selected_with']} (mean cosine to the nearest exemplar "
          f"{summary['coverage']:.4f}) in {summary['seconds']:.1f} s")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from engine.retrieval.builder import add_assets
    from engine.retrieval.encoders import load_encoder
    from engine.retrieval.library import PartLibrary
    from engine.retrieval.shape import PartEncoder

    labels = {}
    for item in args.label:
        name, sep, label = item.partition("=")
        if not sep or not name or not label:
            print(f"--label {item!r}: expected NAME=LABEL", file=sys.stderr)
            return 2
        labels[name] = label
    device = _setup(args)
    library = PartLibrary.load(args.library)
    vae = args.vae or Path(library.info["shape"]["vae"])
    if not vae.is_dir():
        print(f"the library's VAE folder {vae} is not here; pass --vae VAE_DIR", file=sys.stderr)
        return 2
    encoders = [load_encoder(key, device) for key in library.encoders]
    report = add_assets(args.library, args.files, encoders, PartEncoder(vae, device),
                        args.category, labels)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    shown = ", ".join(report.added[:10]) + (" ..." if len(report.added) > 10 else "")
    print(f"added {len(report.added)} asset(s) to {args.library} ({len(report.skipped)} "
          f"skipped){': ' + shown if report.added else ''}")
    return 0 if report.added or not report.skipped else 2


def _read_image(path: Path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGBA"))


def run_search(args: argparse.Namespace) -> int:
    import numpy as np

    from engine.retrieval.encoders import load_encoder
    from engine.retrieval.hcr import HCR
    from engine.retrieval.library import PartLibrary
    from engine.retrieval.search import Searcher

    library = PartLibrary.load(args.library)
    retriever = HCR.from_pretrained(args.retriever) if args.retriever else None
    space = retriever.config.encoder if retriever else (args.space or library.encoders[0])
    encoder = load_encoder(space, args.device) if args.image else None
    searcher = Searcher(library, encoder, retriever, space)
    if args.image:
        image = _read_image(args.image)
        if args.mask:
            from PIL import Image

            mask = np.asarray(Image.open(args.mask).convert("L"))
            mask = mask == args.part if args.part is not None else mask > 0
            hits = searcher.by_image(image, args.k, mask)
        elif args.level == "part":
            hits = searcher.parts_in_image(image, args.k)
        else:
            hits = searcher.by_image(image, args.k)
    elif args.text:
        clip = next((key for key in library.encoders if key.startswith("clip:")), None)
        text_encoder = load_encoder(clip, args.device) if clip else None
        hits = searcher.by_text(args.text, args.k, text_encoder)
    else:
        if args.part is None:
            print("--asset needs --part", file=sys.stderr)
            return 2
        hits = searcher.by_part(args.asset, args.part, args.k)
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=1))
    else:
        print(f"{len(hits)} hits in {searcher.name} space:")
        for h in hits:
            part = "-" if h.part is None else str(h.part)
            print(f"  {h.score:7.4f}  {h.asset_id:<28} part {part:>2}  {h.label}")
    return 0


def run_bank(args: argparse.Namespace) -> int:
    from engine.retrieval.library_bank import install_library_bank

    settings = install_library_bank(args.model, args.library)
    print(f"{args.model}/rag/bank.npz: {settings['size']} exemplars from {args.library} "
          f"(library {settings['library']})")
    return 0


def run_info(args: argparse.Namespace) -> int:
    import time
    from collections import Counter

    from engine.retrieval.library import PartLibrary

    started = time.perf_counter()
    library = PartLibrary.load(args.library)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in args.library.iterdir() if p.is_file())
    categories = Counter(a["category"] for a in library.assets)
    print(f"part library {args.library} (format version {library.info['version']}): "
          f"{len(library)} assets, {library.num_parts} parts, {size / 1e6:.1f} MB "
          f"({size / len(library) / 1e3:.1f} kB per asset, {library.info['stored_views']} "
          f"stored views each), loaded in {seconds * 1000:.0f} ms")
    print("encoders: " + ", ".join(f"{e['key']} ({e['dim']})" for e in library.info["encoders"]))
    shape = library.info["shape"]
    print(f"latents: {shape['tokens']} x {shape['channels']} per part from {shape['vae']}")
    if "selection" in library.info:
        s = library.info["selection"]
        print(f"chosen from {s['candidates']} candidates of {s['built_from']} by "
              f"{s['selected_with']} (coverage {s['coverage']:.4f})")
    print("categories: " + ", ".join(f"{c} {n}" for c, n in sorted(categories.items())))
    return 0
