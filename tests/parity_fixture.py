"""The parity fixture of the model tests: model folders and reference inputs/outputs
(io.safetensors) recorded from the public PartCrafter code, kept in the shared checkout, and
the public checkpoint's state-dict listing. The `io` and `dit` fixtures are in conftest.py."""

import json
import shutil
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIXTURE = REFERENCE / "parity-A"
LISTING = REFERENCE / "partcrafter-state-dict.json"
TOLERANCE = 1e-4  # largest difference allowed from the reference outputs

needs_fixture = pytest.mark.skipif(
    not (FIXTURE / "io.safetensors").is_file(),
    reason=f"parity fixture not found at {FIXTURE} (it lives in the shared checkout)")
needs_listing = pytest.mark.skipif(not LISTING.is_file(),
                                   reason="public state-dict listing not found")


def public_listing(name: str) -> dict:
    """The listing of one public model folder ("transformer", "vae"): state_dict_shapes,
    num_params (and the transformer's config_defaults)."""
    return json.loads(LISTING.read_text())[name]


def assert_matches_public_listing(model: torch.nn.Module, listing: dict) -> None:
    shapes = {name: list(t.shape) for name, t in model.state_dict().items()}
    assert shapes == listing["state_dict_shapes"]
    assert sum(p.numel() for p in model.parameters()) == listing["num_params"]


def assert_loading_leaves_folder_untouched(load, name: str, tmp_path: Path) -> None:
    """`load(folder)` on a copy of the fixture's `name` folder changes none of its files."""
    shutil.copytree(FIXTURE / name, tmp_path / name)
    load(tmp_path / name)
    for file in ("config.json", "diffusion_pytorch_model.safetensors"):
        assert (tmp_path / name / file).read_bytes() == (FIXTURE / name / file).read_bytes()
