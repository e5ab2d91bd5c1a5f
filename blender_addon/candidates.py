"""The swap candidates the Parts panel shows as a grid of library thumbnails.

`show(part_obj, found)` keeps the engine's candidates for one part and loads their
thumbnails into a `bpy.utils.previews` collection (from files in a temporary folder, the
one way previews load images); `items()` feeds the panel's enum. Plain functions, so tests
can drive them without a UI.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import bpy.utils.previews

_previews = None  # the preview collection, made on first use
_folder: Path | None = None
_shown: list = []  # api.Candidate, in grid order
_for_part = ""  # name of the part object they were found for
_items: list = []  # Blender needs the enum items kept alive


def show(part_obj, found: list) -> None:
    """Replace the grid with `found` (api.Candidate) for `part_obj`."""
    global _previews, _folder, _for_part
    clear()
    _previews = bpy.utils.previews.new()
    _folder = Path(tempfile.mkdtemp(prefix="partsmith-thumbnails-"))
    for n, candidate in enumerate(found):
        if candidate.thumbnail:
            path = _folder / f"{n}.webp"
            path.write_bytes(candidate.thumbnail)
            _previews.load(str(n), str(path), "IMAGE")
    _shown[:] = found
    _for_part = part_obj.name


def shown() -> list:
    return list(_shown)


def shown_for() -> str:
    """The part object the grid's candidates were found for."""
    return _for_part


def get(key: str):
    """The candidate an enum key names (its position in the grid)."""
    return _shown[int(key)] if key.isdigit() and int(key) < len(_shown) else None


def items(self, context) -> list:
    """EnumProperty items: one per candidate, with its thumbnail as the icon."""
    _items[:] = [(str(n), f"{c.label} ({c.asset_id})", f"{c.label} from {c.asset_id}, part {c.part}",
                  _previews[str(n)].icon_id if _previews is not None and str(n) in _previews else 0, n)
                 for n, c in enumerate(_shown)] or [("", "No candidates", "Find candidates first", 0, 0)]
    return _items


def clear() -> None:
    global _previews, _folder, _for_part
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)
        _folder = None
    _shown.clear()
    _for_part = ""
