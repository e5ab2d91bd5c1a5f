"""Which pipeline class loads a bundle folder, by the `_class_name` of its model_index.json:
the one table the engine server, the CLI and the evaluations look bundles up in. A new
pipeline (UniPart, the part editor) is a new row, not a new branch in its callers. The
table names modules instead of importing them, so the server can list what is installed
without loading torch; a class loads when a bundle of it is first used."""

from __future__ import annotations

import importlib
from pathlib import Path

from engine.pipelines.bundle import CLASS_KEY, MODEL_INDEX, read_model_index

DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "models"  # where bundles are installed

# _class_name -> (the bridge operation it serves, module, class)
PIPELINES = {
    "PartRAGPipeline": ("generate", "engine.pipelines.partrag", "PartRAGPipeline"),
    "PartCrafterPipeline": ("generate", "engine.pipelines.partrag", "PartRAGPipeline"),
    "UniPartPipeline": ("generate", "engine.pipelines.unipart", "UniPartPipeline"),
}


# _class_name -> (module, class) of the part editor that runs on such a bundle's networks
EDITORS = {
    "PartRAGPipeline": ("engine.pipelines.editor", "PartEditor"),
    "PartCrafterPipeline": ("engine.pipelines.editor", "PartEditor"),
}


def class_name(folder: str | Path) -> str:
    """The bundle's `_class_name`, refused when no pipeline of this engine loads it."""
    name = read_model_index(folder)[CLASS_KEY]
    if name not in PIPELINES:
        raise ValueError(f"{folder}: no pipeline of this engine loads {CLASS_KEY} {name!r} "
                         f"(it loads {', '.join(sorted(PIPELINES))})")
    return name


def operation_of(folder: str | Path) -> str:
    return PIPELINES[class_name(folder)][0]


def class_for(folder: str | Path) -> type:
    """The pipeline class that loads the bundle in `folder`."""
    _, module, cls = PIPELINES[class_name(folder)]
    return getattr(importlib.import_module(module), cls)


def has_editor(folder: str | Path) -> bool:
    return class_name(folder) in EDITORS


def editor_over(pipeline, folder: str | Path):
    """The part editor of the bundle in `folder`, sharing its loaded `pipeline`."""
    module, cls = EDITORS[class_name(folder)]
    return getattr(importlib.import_module(module), cls).over(pipeline, folder)


def load_pipeline(folder: str | Path, device="cpu", **options):
    """Whatever pipeline the bundle in `folder` declares, loaded onto `device`."""
    return class_for(folder).from_pretrained(folder, device, **options)


def installed_bundles(models: str | Path = DEFAULT_MODELS) -> list[Path]:
    """Bundle folders directly under `models` (those with a model_index.json), by name."""
    models = Path(models)
    if not models.is_dir():
        return []
    return [folder for folder in sorted(models.iterdir()) if (folder / MODEL_INDEX).is_file()]
