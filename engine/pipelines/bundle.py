"""The model-bundle contract every pipeline follows, as diffusers' DiffusionPipeline does:
a bundle folder is `model_index.json` ({"_class_name": ..., component: [library, class]})
plus one subfolder per component. A pipeline class reads it in `from_pretrained(folder,
device)`, writes it in `save_pretrained(folder)`, and lists the `_class_name`s it loads in
`class_names`; engine/pipelines/registry.py finds the class for a folder."""

from __future__ import annotations

import json
from pathlib import Path

from engine.files import write_json_atomic

MODEL_INDEX = "model_index.json"
CLASS_KEY = "_class_name"


def read_model_index(folder: str | Path) -> dict:
    """A bundle's model_index.json, or an error saying how to get a bundle."""
    path = Path(folder) / MODEL_INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a model bundle: it has no {MODEL_INDEX} "
                                f"(train one with `python -m engine train dit ... --export "
                                f"{folder}`, or download a PartCrafter folder)")
    index = json.loads(path.read_text())
    if not isinstance(index, dict) or not isinstance(index.get(CLASS_KEY), str):
        raise ValueError(f"{path} names no pipeline ({CLASS_KEY})")
    return index


def write_model_index(folder: str | Path, class_name: str,
                      components: dict[str, tuple[str, str]]) -> Path:
    """model_index.json naming the pipeline class and (library, class) of each component."""
    return write_json_atomic(Path(folder) / MODEL_INDEX,
                             {CLASS_KEY: class_name, **{k: list(v) for k, v in components.items()}})
