"""Per-object array caches (`<cache>/<split>/<name>.npz`): an options stamp that keeps caches
built differently apart, and atomic .npz writes, so an interrupted build leaves no partial
file and a rerun skips the finished ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.files import write_atomic, write_json_atomic

OPTIONS_FILE = "options.json"


def check_options(cache: Path, wanted: dict) -> None:
    """Write the cache's options on first use; refuse to mix caches built differently."""
    path = Path(cache) / OPTIONS_FILE
    wanted = json.loads(json.dumps(wanted))  # as read back (tuples become lists)
    if path.is_file():
        found = json.loads(path.read_text())
        if found != wanted:
            raise ValueError(f"{cache} was built with other options ({found}, now {wanted}); "
                             f"delete it or use another cache folder")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, wanted)


def object_files(cache: Path, split: str, names: list[str]) -> tuple[list[Path], list[tuple]]:
    """Every named object's cache file in `cache`/`split` (the folder made), and the
    (name, path) pairs not written yet: a rerun makes only those."""
    (Path(cache) / split).mkdir(parents=True, exist_ok=True)
    paths = [Path(cache) / split / f"{name}.npz" for name in names]
    return paths, [(name, path) for name, path in zip(names, paths) if not path.is_file()]


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """np.savez to `path`, atomically."""
    return write_atomic(path, lambda tmp: np.savez(tmp, **arrays))
