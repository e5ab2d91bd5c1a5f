"""Pictures of a dataset: part-coloured and reference-image contact sheets, part-count histogram."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from engine.data.dataset import load_asset, read_manifest
from engine.render.camera import sheet_camera
from engine.render.renderer import Renderer
from engine.render.sheet import contact_sheet

def pick_across_categories(manifest: dict, count: int) -> list[tuple[str, dict]]:
    """Up to `count` (split, record) pairs, taking categories in turn so every one appears."""
    by_category: dict[str, list[tuple[str, dict]]] = {}
    for split, records in manifest["splits"].items():
        for record in records:
            by_category.setdefault(record["category"], []).append((split, record))
    picked, queues = [], [by_category[c] for c in sorted(by_category)]
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def write_part_histogram(manifest: dict, path: Path) -> None:
    """Bar chart of objects per part count, stacked by split, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = {split: Counter(r["parts"] for r in records)
              for split, records in manifest["splits"].items() if records}
    xs = list(range(2, 9))
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    bottom = [0] * len(xs)
    for split, counter in counts.items():
        heights = [counter.get(x, 0) for x in xs]
        ax.bar(xs, heights, bottom=bottom, label=f"{split} ({sum(heights)})")
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xlabel("parts per object")
    ax.set_ylabel("objects")
    ax.set_title(f"Part counts, {sum(bottom)} objects, {len(manifest['categories'])} categories")
    ax.legend(frameon=False)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".hist-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        plt.close(fig)


def write_overview(dataset: Path, out: Path, count: int = 54, tile: int = 160) -> dict[str, Path]:
    """Into `out`: contact sheets of `count` objects, part-coloured and as reference images
    (the first rendered view, with the object's materials), and the part-count histogram."""
    dataset, out = Path(dataset), Path(out)
    manifest = read_manifest(dataset)
    out.mkdir(parents=True, exist_ok=True)
    camera = sheet_camera(2 * tile)
    previews, references, captions = [], [], []
    with Renderer() as renderer:
        for split, record in pick_across_categories(manifest, count):
            folder = dataset / split / record["name"]
            previews.append(renderer.render(load_asset(folder), [camera], preview=True)[0].preview)
            references.append(np.asarray(Image.open(folder / "view_00.png")))
            captions.append(f"{record['category']} ({record['parts']})")
    paths = {"contact_sheet": out / "contact_sheet.png", "reference_views": out / "reference_views.png",
             "part_counts": out / "part_counts.png"}
    contact_sheet(previews, paths["contact_sheet"], captions, columns=9, tile=tile)
    contact_sheet(references, paths["reference_views"], captions, columns=9, tile=tile)
    write_part_histogram(manifest, paths["part_counts"])
    return paths
