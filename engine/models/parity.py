"""Parity against the reference fixtures (`python -m engine parity DIR`).

A fixture folder holds a random-weight model in the public layout and `io.safetensors` with
inputs and the reference outputs (every tensor with `out` in its name). Each producer below
loads its network from the folder and recomputes the outputs it can; to cover another
network, write one producer and append it to PRODUCERS.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

from engine.models.checkpoint import CheckpointError
from engine.models.dual_lane_dit import DualLaneDiT
from engine.models.flow_sampler import FlowSampler
from engine.models.vecset_vae import VecSetVAE

TOLERANCE = 1e-4  # max absolute error, float32 on CPU

Producer = Callable[[Path, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def vae_outputs(folder: Path, io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`vae_out_moments` (encoder with the given query subset) and `vae_dec_out_logits`."""
    if "vae_in_points" not in io:
        return {}
    vae = VecSetVAE.from_pretrained(folder / "vae")
    moments = vae.encode(io["vae_in_points"], query_index=io["vae_in_query_index"]).moments
    logits = vae.decode(io["vae_dec_in_latents"], io["vae_dec_in_queries"])
    return {"vae_out_moments": moments, "vae_dec_out_logits": logits}


def transformer_outputs(folder: Path, io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`dit_out` (one object, num_parts an int) and `ditb_out` (objects stacked, part
    counts as a tensor)."""
    if "dit_in_latents" not in io:
        return {}
    model = DualLaneDiT.from_pretrained(folder / "transformer")
    latents = io["dit_in_latents"]
    outputs = {"dit_out": model(latents, io["dit_in_timestep"], io["dit_in_context"],
                                latents.shape[0])}
    if "ditb_in_latents" in io:
        outputs["ditb_out"] = model(io["ditb_in_latents"], io["ditb_in_timestep"],
                                    io["ditb_in_context"], io["ditb_in_num_parts"])
    return outputs


def sampler_outputs(folder: Path, io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`sample_out_latents`: guided sampling of one object from the given start noise, with
    as many steps as the fixture lists timesteps, conditioned on `dit_in_context`."""
    if "sample_init_latents" not in io:
        return {}
    model = DualLaneDiT.from_pretrained(folder / "transformer")
    sampler = FlowSampler.from_pretrained(folder / "scheduler")
    noise = io["sample_init_latents"]
    latents = sampler.sample(model, noise, io["dit_in_context"], noise.shape[0],
                             steps=len(io["sample_timesteps"]),
                             guidance=float(io["sample_guidance"]))
    return {"sample_out_latents": latents}


PRODUCERS: list[Producer] = [vae_outputs, transformer_outputs, sampler_outputs]


def reference_outputs(io: dict[str, torch.Tensor]) -> list[str]:
    """Names of the fixture's reference outputs."""
    return sorted(name for name in io if "out" in name.split("_"))


def read_fixture(folder: str | Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / "io.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a parity fixture: io.safetensors not found")
    return load_file(path)


def max_abs_error(value: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference; infinite when the shapes differ."""
    if value.shape != expected.shape:
        return float("inf")
    return (value.detach().double().cpu() - expected.double()).abs().max().item()


def check_fixture(folder: str | Path) -> dict[str, float]:
    """Max absolute error of every reference output we can recompute, by output name."""
    folder, io = Path(folder), read_fixture(folder)
    errors = {}
    with torch.no_grad():
        for produce in PRODUCERS:
            for name, value in produce(folder, io).items():
                errors[name] = max_abs_error(value, io[name])
    return errors


def add_parity(subparsers) -> None:
    parser = subparsers.add_parser(
        "parity", help="check the networks against a reference fixture folder")
    parser.add_argument("folder", type=Path, metavar="DIR",
                        help="fixture folder (model folders + io.safetensors)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"largest acceptable max absolute error (default {TOLERANCE:g})")
    parser.set_defaults(run=run_parity)


def run_parity(args) -> int:
    """Print the error per output; 0 when all checked outputs are within tolerance."""
    try:
        errors = check_fixture(args.folder)
        expected = reference_outputs(read_fixture(args.folder))
    except (CheckpointError, OSError) as error:
        print(error, file=sys.stderr)
        return 2
    for name, error in errors.items():
        verdict = "ok" if error <= args.tolerance else "FAIL"
        print(f"{name:24s} max abs error {error:.3e}  {verdict}")
    unchecked = [name for name in expected if name not in errors]
    if unchecked:
        print(f"not checked yet: {', '.join(unchecked)}")
    if not errors:
        print("no output could be checked", file=sys.stderr)
        return 1
    return 0 if all(error <= args.tolerance for error in errors.values()) else 1
