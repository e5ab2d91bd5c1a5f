"""Fixtures shared by several test files (pytest hands them to tests by name)."""

import pytest
from safetensors.torch import load_file

from parity_fixture import FIXTURE


@pytest.fixture(scope="module")
def io():
    """The parity fixture's reference inputs and outputs (tests using it need
    parity_fixture.needs_fixture)."""
    return load_file(FIXTURE / "io.safetensors")


@pytest.fixture(scope="module")
def dit():
    """The parity fixture's DualLaneDiT (its transformer/ folder)."""
    from engine.models.dual_lane_dit import DualLaneDiT

    return DualLaneDiT.from_pretrained(FIXTURE / "transformer")
