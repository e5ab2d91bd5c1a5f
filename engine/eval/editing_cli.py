"""`python -m engine eval editing ...` (registered by eval/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.files import write_json_atomic, write_text_atomic


def add_editing(sub: argparse._SubParsersAction) -> None:
    edit = sub.add_parser("editing", help="part editor: preservation, seams, semantic agreement, "
                          "speed and the ablation rows (PartRAG Table 3)")
    edit.add_argument("--split", default="test", choices=["train", "val", "test"])
    edit.add_argument("--data", type=Path, default=Path("data/parts"), help="dataset folder")
    edit.add_argument("--model", type=Path, default=Path("models/partrag"), help="PartRAG bundle")
    edit.add_argument("--limit", type=int, default=50,
                      help="test objects; each gets a swap, a refine and an assembly")
    edit.add_argument("--ablation-limit", type=int, default=10,
                      help="objects whose swap and refine also run the two ablations")
    edit.add_argument("--steps", type=int, help="denoising steps per edit (default 20)")
    edit.add_argument("--consistency", type=int, default=5,
                      help="objects of the multi-view consistency figure (0: skip)")
    edit.add_argument("--out", type=Path, default=Path("out/eval_editing"),
                      help="folder for results.md and results.json")
    edit.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    edit.set_defaults(run=run_eval_editing)


def run_eval_editing(args: argparse.Namespace) -> int:
    from engine.demo import DEMO_IMAGE
    from engine.device import resolve_device
    from engine.eval.editing import (evaluate_editing, markdown_table, multiview_consistency,
                                     summarise, time_edits)
    from engine.pipelines.cli import read_image
    from engine.pipelines.editor import PartEditor

    editor = PartEditor.from_pretrained(args.model, resolve_device(args.device))
    rows = evaluate_editing(editor, args.data, args.split, args.limit, args.ablation_limit,
                            args.steps)
    table = summarise(rows)
    timing = time_edits(editor, read_image(DEMO_IMAGE))
    consistency = (multiview_consistency(editor.pipeline, args.data, args.split, args.consistency)
                   if args.consistency else None)
    text = (f"Part editor over `{args.model}` on `{args.data}` {args.split} (first {args.limit} "
            f"objects, ablations on the first {args.ablation_limit}):\n\n{markdown_table(table)}\n\n"
            f"1-part refine of an 8-part asset (the demo chair), K = 20: "
            f"{timing['refine_1_of_8_k20']:.2f} s; place: "
            + ("–" if timing["place"] is None else f"{timing['place'] * 1000:.0f} ms") + "\n")
    if consistency:
        text += (f"multi-view consistency ({consistency['objects']} objects × "
                 f"{consistency['views']} views): CD variance {consistency['cd_variance']:.4f}\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "results.md", text)
    write_json_atomic(args.out / "results.json", {"table": table, "timing": timing,
                                                  "consistency": consistency, "edits": rows})
    return 0
