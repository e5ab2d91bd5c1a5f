"""Training recipes by name or from a JSON file, shared by every `train` command."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path

from engine.files import write_json_atomic

RECIPE_NAME = "recipe.json"  # in a run folder: what the run was started with


def load_recipe(name_or_path: str, recipes: dict):
    """A copy of `recipes[name_or_path]`, or the recipe dataclass (the type of the named ones)
    built from a JSON file of its keys; unknown keys are refused."""
    if name_or_path in recipes:
        return copy.deepcopy(recipes[name_or_path])
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {name_or_path}: neither {sorted(recipes)} nor a file")
    recipe_type = type(next(iter(recipes.values())))
    raw = json.loads(path.read_text())
    unknown = set(raw) - {f.name for f in fields(recipe_type)}
    if unknown:
        raise ValueError(f"{path}: unknown recipe keys {sorted(unknown)}")
    return recipe_type(**raw)


def record_recipe(run_dir: Path, recipe: dict, resume: bool) -> None:
    """Create the run folder and write `recipe` as its recipe.json; with `resume`, refuse a
    run that was started with another recipe."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RECIPE_NAME
    recipe = json.loads(json.dumps(recipe))  # as read back (tuples become lists)
    if resume and path.is_file() and json.loads(path.read_text()) != recipe:
        raise ValueError(f"{run_dir} was started with another recipe ({path})")
    write_json_atomic(path, recipe)
