"""`python -m engine edit ASSET_DIR --parts 2 [3 ...] (--refine | --swap ID[:PART] | ...)
--out DIR`: change some parts of a generated (or earlier edited) asset, keep the rest.
ASSET_DIR is what `generate` or `edit` wrote; the output folder has the same files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("edit", help="swap, refine, vary, interpolate or assemble "
                                   "parts of an asset folder (PartRAG's part editor)")
    parser.add_argument("asset", type=Path, help="folder written by `generate` or `edit`")
    parser.add_argument("--parts", type=int, nargs="+", required=True,
                        help="indices of the parts to change (parts.json `index`)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--refine", action="store_true",
                      help="re-noise the parts to --strength and denoise again (--seed varies)")
    what.add_argument("--swap", type=library_part, metavar="ID[:PART]",
                      help="put this library part in the part's place, then blend it in")
    what.add_argument("--swap-search", action="store_true",
                      help="swap in the library part nearest the part's own shape")
    what.add_argument("--place", type=library_part, metavar="ID[:PART]",
                      help="put this library part in the part's place as it is (instant)")
    what.add_argument("--interpolate", type=float, metavar="ALPHA",
                      help="move the part's latent toward its nearest library part by ALPHA")
    what.add_argument("--assemble", action="store_true",
                      help="resynthesise several parts together from noise")
    parser.add_argument("--strength", type=float,
                        help="start σ (default: refine 0.5, swap and interpolate 0.3, "
                             "assemble 1)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 20)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the bundle's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path,
                        help="PartRAG bundle (default: the one the asset was made with, else "
                             "models/partrag)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run_edit)


def library_part(text: str):
    """ID[:PART] -> LibraryPart (part 0 when not given)."""
    from engine.pipelines.editor import LibraryPart

    asset, _, part = text.partition(":")
    try:
        return LibraryPart(asset, int(part) if part else 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LIBRARY_ID or LIBRARY_ID:PART, got {text!r}")


def operation_of(args: argparse.Namespace) -> tuple[str, dict]:
    """The parsed choice -> (editor operation, its arguments)."""
    if args.refine:
        return "refine", {}
    if args.swap is not None:
        return "swap", {"source": args.swap}
    if args.swap_search:
        return "swap", {}
    if args.place is not None:
        return "place", {"source": args.place}
    if args.interpolate is not None:
        return "interpolate", {"alpha": args.interpolate}
    return "assemble", {}


def edit_files(asset_dir: Path, out: Path, targets: list[int], operation: str, *,
               model: Path | None = None, device: str = "auto", **options):
    """Edit the asset in `asset_dir` and write the result into `out` (the same files as
    generate); returns the Generation. A swap without a source searches the library."""
    from engine.device import resolve_device
    from engine.pipelines.editor import PartEditor
    from engine.pipelines.outputs import read_asset, write_generation
    from engine.pipelines.registry import DEFAULT_MODELS

    saved = read_asset(asset_dir)
    if model is None:
        made_with = Path(saved.params.get("model", ""))
        model = made_with if (made_with / "transformer").is_dir() else DEFAULT_MODELS / "partrag"
    editor = PartEditor.from_pretrained(model, resolve_device(device))
    if operation == "swap" and options.get("source") is None:
        options["source"] = editor.search(saved.parts, targets[0])[0]
    result = editor(saved.parts, targets, operation, image=saved.reference, **options)
    result.reports = [{**old, **new} for old, new in zip(saved.reports, result.reports)]
    write_generation(result, out)
    return result


def run_edit(args: argparse.Namespace) -> int:
    from bridge.errors import RequestRefused

    operation, options = operation_of(args)
    try:
        result = edit_files(args.asset, args.out, args.parts, operation, model=args.model,
                            device=args.device, strength=args.strength, steps=args.steps,
                            guidance=args.guidance, seed=args.seed, **options)
    except RequestRefused as error:
        print(f"edit refused ({error.code}): {error}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as error:
        print(f"edit: {error}", file=sys.stderr)
        return 2
    t = result.timings
    changed = ", ".join(f"{i} -> {result.parts[i].label}" for i in args.parts)
    print(f"{operation}: parts {changed}; {len(result.parts)} parts -> {args.out} in "
          f"{t['total']:.2f} s")
    return 0
