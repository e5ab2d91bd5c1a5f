"""Rectified-flow sampler for the dual-lane DiT (the public `scheduler/` folder).

Flow convention of the checkpoints: x_σ = (1-σ)·x0 + σ·noise, the model predicts
v = x0 - noise, so an Euler step from σ_i down to σ_(i+1) is x += (σ_i - σ_(i+1))·v.
With S steps σ_i = 1 - i/S (then 0), optionally shifted σ' = shift·σ / (1 + (shift-1)·σ);
the model sees timestep σ·num_train_timesteps. Sampling may also start part-way, from
known latents: with `strength` s < 1 the unshifted schedule runs s·(1 - i/S) and the start is
(1-σ_0)·init + σ_0·noise, the flow's own interpolation (PartRAG's editor initialises its
denoising from retrieved latents the same way).

Masked sampling (PartRAG's part editor, §3.5): rows marked `frozen` are not sampled but
re-entered before every step at the current σ, (1-σ_i)·clean + σ_i·noise, with the same
noise throughout: the DiT was trained with one σ per object, so clean parts beside noisy
ones would be out of its distribution (inpainting with flow models works this way). They
come back as their clean latents.

Classifier-free guidance runs one doubled batch [unconditional, conditional]: zero context
first, each half with its own part ids 0..n-1 per object; v = v_u + g·(v_c - v_u).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from engine.models.checkpoint import read_config, split_config, write_config
from engine.models.dual_lane_dit import part_counts

CONFIG_NAME = "scheduler_config.json"
CLASS_NAME = "RectifiedFlowScheduler"  # written on save so the reference code can load it
# Extra key of scheduler_config.json: the guidance scale a bundle was measured best with.
GUIDANCE_KEY = "default_guidance"

# (latents, timestep per row, context, num_parts) -> v; a DualLaneDiT is one
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FlowSchedulerConfig:
    """The public scheduler config keys."""
    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | None = None,
                  device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Start latents, drawn on the generator's device and moved: one seed gives the same
    start on CPU and GPU."""
    source = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=source, dtype=dtype)
    return noise.to(device) if device is not None else noise


class FlowSampler:
    """Euler sampler over the rectified-flow σ schedule; stateless apart from its config."""

    def __init__(self, config: FlowSchedulerConfig | None = None, **extra_config):
        """`extra_config`: keys of scheduler_config.json that are not ours, kept for save."""
        self.config = config = config or FlowSchedulerConfig()
        self.extra_config = {"_class_name": CLASS_NAME, **extra_config}
        if config.use_dynamic_shifting:
            raise ValueError("use_dynamic_shifting is not supported (the published "
                             "scheduler has it off)")
        if config.shift <= 0 or config.num_train_timesteps <= 0:
            raise ValueError(f"shift and num_train_timesteps must be positive, got "
                             f"{config.shift} and {config.num_train_timesteps}")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> FlowSampler:
        """Load a `scheduler/` folder (scheduler_config.json)."""
        config, extra = split_config(read_config(folder, CONFIG_NAME), FlowSchedulerConfig)
        return cls(config, **extra)

    def save_pretrained(self, folder: str | Path) -> None:
        write_config({**self.extra_config, **asdict(self.config)}, folder, CONFIG_NAME)

    def sigmas(self, steps: int, strength: float = 1.0) -> torch.Tensor:
        """(steps + 1,) noise levels from `strength` (1: pure noise) down to a final 0."""
        if steps < 1:
            raise ValueError(f"need at least one step, got {steps}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        sigma = strength * (1.0 - torch.arange(steps, dtype=torch.float64) / steps)
        shift = self.config.shift
        sigma = shift * sigma / (1.0 + (shift - 1.0) * sigma)
        return torch.cat([sigma, sigma.new_zeros(1)]).float()

    def timesteps(self, steps: int, strength: float = 1.0) -> torch.Tensor:
        """(steps,) timesteps the model sees: σ·num_train_timesteps."""
        return self.sigmas(steps, strength)[:-1] * self.config.num_train_timesteps

    @torch.no_grad()
    def sample(self, model: Denoiser, noise: torch.Tensor, context: torch.Tensor,
               num_parts: int | torch.Tensor, *, steps: int = 50, guidance: float = 7.0,
               init: torch.Tensor | None = None, strength: float = 1.0,
               frozen: torch.Tensor | None = None, renoise_frozen: bool = True,
               progress: Callable[[int, int], None] | None = None,
               check_cancelled: Callable[[], None] | None = None) -> torch.Tensor:
        """noise (rows, T, C) -> latents after `steps` guided Euler steps.

        `context` (rows, L, Cc) conditions every part row; `num_parts` groups rows into
        objects. Guidance g > 1 runs the [unconditional, conditional] batch; g <= 1 runs
        the conditional branch alone. `init` (like noise) with `strength` < 1 starts from
        those latents noised to the first σ. `frozen` (rows,) bool marks rows of `init` that
        stay as they are (masked sampling, see the module docstring; `renoise_frozen` False
        enters them clean at every step instead, the ablation). `progress(done, steps)`
        follows every step; `check_cancelled()` runs before every step and stops sampling by
        raising."""
        if (init is None) != (strength == 1.0 and frozen is None):
            raise ValueError("start latents go with a strength below 1 or frozen rows")
        counts = part_counts(num_parts).to(noise.device)
        sigmas, timesteps = self.sigmas(steps, strength), self.timesteps(steps, strength)
        x = noise
        if init is not None:
            if init.shape != noise.shape:
                raise ValueError(f"start latents {tuple(init.shape)} do not match the noise "
                                 f"{tuple(noise.shape)}")
            x = ((1.0 - sigmas[0].item()) * init.float() + sigmas[0].item() * noise.float()
                 ).to(noise.dtype)
        if frozen is not None:
            if init is None or frozen.shape != noise.shape[:1] or frozen.all():
                raise ValueError("masked sampling needs start latents, one flag per row and "
                                 "at least one row to sample")
            frozen = frozen.to(noise.device)
        for i in range(steps):
            if check_cancelled is not None:
                check_cancelled()
            if frozen is not None:
                level = sigmas[i].item() if renoise_frozen else 0.0
                x[frozen] = ((1.0 - level) * init[frozen].float()
                             + level * noise[frozen].float()).to(x.dtype)
            v = guided_velocity(model, x, timesteps[i].item(), context, counts, guidance)
            x = (x.float() + (sigmas[i] - sigmas[i + 1]).item() * v.float()).to(x.dtype)
            if progress is not None:
                progress(i + 1, steps)
        if frozen is not None:
            x[frozen] = init[frozen].to(x.dtype)
        return x


def guided_velocity(model: Denoiser, latents: torch.Tensor, timestep: float,
                    context: torch.Tensor, counts: torch.Tensor,
                    guidance: float) -> torch.Tensor:
    """The model's v at one timestep, classifier-free guided when guidance > 1."""
    rows = latents.shape[0]
    if guidance <= 1.0:
        t = torch.full((rows,), timestep, device=latents.device)
        return model(latents, t, context, counts)
    t = torch.full((2 * rows,), timestep, device=latents.device)
    v_u, v_c = model(torch.cat([latents, latents]), t,
                     torch.cat([torch.zeros_like(context), context]),
                     torch.cat([counts, counts])).chunk(2)
    return v_u + guidance * (v_c - v_u)
