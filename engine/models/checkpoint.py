"""The diffusers model-folder layout (config.json + diffusion_pytorch_model.safetensors),
read and written without diffusers, so public checkpoints load unmodified."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import TypeVar

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engine.files import MissingInput, write_atomic, write_text_atomic

CONFIG_NAME = "config.json"
LISTED = 20  # names shown per kind of problem; a wrong size config misfits hundreds
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

C = TypeVar("C")
M = TypeVar("M", bound=nn.Module)


class CheckpointError(ValueError):
    """A model folder that does not match the network it is loaded into."""


class MissingModel(CheckpointError, MissingInput):
    """A model folder that is not there."""


def read_config(folder: str | Path, name: str = CONFIG_NAME) -> dict:
    """The folder's config.json (or `name`, e.g. a scheduler's scheduler_config.json) as a
    dict (every key, including `_class_name` and the like)."""
    path = Path(folder) / name
    if not path.is_file():
        raise MissingModel(f"{folder} is not a model folder: {name} not found (each model's "
                           f"MODEL_CARD.md in models/ gives the command that trains it)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error


def load_weights(module: nn.Module, folder: str | Path) -> None:
    """Load the folder's weights into `module`; every name and shape must match exactly."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no weights: {WEIGHTS_NAME} not found")
    try:
        loaded = load_file(path)
    except SafetensorError as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    expected = module.state_dict()
    missing = sorted(expected.keys() - loaded.keys())
    unexpected = sorted(loaded.keys() - expected.keys())
    mismatched = [f"{name} {tuple(loaded[name].shape)} (expected {tuple(tensor.shape)})"
                  for name, tensor in expected.items()
                  if name in loaded and loaded[name].shape != tensor.shape]
    problems = []
    for kind, names in [("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", mismatched)]:
        if names:
            more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
            problems.append(f"{kind} ({len(names)}): {', '.join(names[:LISTED])}{more}")
    if problems:
        raise CheckpointError(f"{path} does not fit {type(module).__name__} with its "
                              f"config.json: " + "; ".join(problems))
    module.load_state_dict(loaded)


def split_config(raw: dict, config_type: type[C]) -> tuple[C, dict]:
    """A config.json's keys as the dataclass `config_type` (the keys that are its fields) and
    the other keys (`_class_name`, keys of the reference code we do not use)."""
    names = {f.name for f in fields(config_type)}
    return (config_type(**{k: v for k, v in raw.items() if k in names}),
            {k: v for k, v in raw.items() if k not in names})


def load_pretrained(cls: type[M], config_type: type, folder: str | Path,
                    keep_extra: bool = True) -> M:
    """`cls(config, **extra)` built from the folder's config.json (see split_config; with
    keep_extra=False the extra keys are dropped and `cls(config)` is built), its weights
    loaded strictly, in eval mode. A config the network refuses (ValueError) is a
    CheckpointError naming the file; one that does not describe the weights fails the
    weight check."""
    config, extra = split_config(read_config(folder), config_type)
    try:
        model = cls(config, **extra) if keep_extra else cls(config)
    except ValueError as error:
        raise CheckpointError(f"{Path(folder) / CONFIG_NAME}: {error}") from error
    load_weights(model, folder)
    return model.eval()


def write_config(config: dict, folder: str | Path, name: str = CONFIG_NAME) -> None:
    """Write `config` as the folder's config.json (or `name`), creating the folder."""
    write_text_atomic(Path(folder) / name, json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_folder(module: nn.Module, config: dict, folder: str | Path) -> None:
    """Write `config` and the module's weights as a model folder (created if needed)."""
    folder = Path(folder)
    write_config(config, folder)
    weights = {name: tensor.detach().contiguous().cpu()
               for name, tensor in module.state_dict().items()}
    write_atomic(folder / WEIGHTS_NAME, lambda tmp: save_file(weights, tmp, metadata={"format": "pt"}))



class PretrainedModule(nn.Module):
    """A network with a public folder: config.json (the dataclass `config_type`'s fields plus
    the reference's keys we do not use, kept so save_pretrained writes them back) and its
    safetensors weights. Subclasses set `config_type` and `class_name`."""

    config_type: type
    class_name: str  # the `_class_name` written into config.json

    def __init__(self, config=None, **extra_config):
        super().__init__()
        self.config = config or self.config_type()
        self.extra_config = {"_class_name": self.class_name, **extra_config}

    @classmethod
    def from_pretrained(cls, folder: str | Path):
        """Load a folder (config.json + diffusion_pytorch_model.safetensors). A config that
        does not describe the weights fails the strict weight check."""
        return load_pretrained(cls, cls.config_type, folder)

    def save_pretrained(self, folder: str | Path) -> None:
        save_folder(self, {**self.extra_config, **asdict(self.config)}, folder)
