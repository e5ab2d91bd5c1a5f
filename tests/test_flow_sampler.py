import json

import pytest
import torch

from engine.models.checkpoint import CheckpointError
from engine.models.dual_lane_dit import DualLaneDiT, DualLaneDiTConfig
from engine.models.flow_sampler import FlowSampler, FlowSchedulerConfig, initial_noise
from parity_fixture import FIXTURE, TOLERANCE, needs_fixture


class Recorder:
    """Stand-in denoiser: v = the first context channel (1 for a conditional row whose
    context is ones, 0 for an unconditional row); records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, latents, timestep, context, num_parts):
        self.calls.append((latents.shape[0], timestep.clone(), context.clone(),
                           num_parts.clone()))
        return context[:, :1, :1].expand_as(latents).clone()


def tiny_dit():
    torch.manual_seed(0)
    return DualLaneDiT(DualLaneDiTConfig(num_attention_heads=2, width=16, in_channels=4,
                                         num_layers=3, cross_attention_dim=8,
                                         max_num_parts=4, global_attn_block_ids=[1])).eval()


@needs_fixture
def test_guided_sampling_reproduces_reference(io):
    dit = DualLaneDiT.from_pretrained(FIXTURE / "transformer")
    sampler = FlowSampler.from_pretrained(FIXTURE / "scheduler")
    steps = len(io["sample_timesteps"])
    assert torch.allclose(sampler.timesteps(steps), io["sample_timesteps"])
    noise = io["sample_init_latents"]
    out = sampler.sample(dit, noise, io["dit_in_context"], noise.shape[0], steps=steps,
                         guidance=float(io["sample_guidance"]))
    assert (out - io["sample_out_latents"]).abs().max() <= TOLERANCE


@needs_fixture
def test_scheduler_config_round_trip(tmp_path):
    FlowSampler.from_pretrained(FIXTURE / "scheduler").save_pretrained(tmp_path)
    original = json.loads((FIXTURE / "scheduler" / "scheduler_config.json").read_text())
    assert json.loads((tmp_path / "scheduler_config.json").read_text()) == original


def test_schedule_runs_from_one_to_zero_and_shifts():
    plain = FlowSampler()
    assert torch.allclose(plain.sigmas(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert torch.allclose(plain.timesteps(4), torch.tensor([1000.0, 750.0, 500.0, 250.0]))
    shifted = FlowSampler(FlowSchedulerConfig(shift=3.0)).sigmas(4)
    assert torch.allclose(shifted, torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]))


def test_guidance_combines_uncond_then_cond_halves():
    model, noise = Recorder(), torch.zeros(3, 5, 4)
    context = torch.ones(3, 2, 8)
    out = FlowSampler().sample(model, noise, context, 3, steps=1, guidance=7.0)
    assert torch.allclose(out, torch.full_like(noise, 7.0))  # v_u + 7·(v_c - v_u) = 7
    rows, timestep, seen_context, counts = model.calls[0]
    assert rows == 6 and torch.equal(counts, torch.tensor([3, 3]))
    assert torch.equal(timestep, torch.full((6,), 1000.0))
    assert seen_context[:3].abs().sum() == 0 and torch.equal(seen_context[3:], context)


def test_guidance_of_one_or_less_runs_the_conditional_branch_alone():
    model = Recorder()
    out = FlowSampler().sample(model, torch.zeros(2, 5, 4), torch.ones(2, 2, 8),
                               torch.tensor([1, 1]), steps=2, guidance=1.0)
    assert [call[0] for call in model.calls] == [2, 2]
    assert torch.allclose(out, torch.ones_like(out))  # two steps of v = 1 over σ 1 -> 0


def test_progress_follows_every_step_and_cancellation_stops_between_steps():
    model, reports = Recorder(), []
    FlowSampler().sample(model, torch.zeros(1, 2, 4), torch.ones(1, 2, 8), 1, steps=3,
                         progress=lambda done, total: reports.append((done, total)))
    assert reports == [(1, 3), (2, 3), (3, 3)]

    class Stop(Exception):
        pass

    def check_cancelled():
        if len(model.calls) == 2:
            raise Stop

    model.calls.clear()
    with pytest.raises(Stop):
        FlowSampler().sample(model, torch.zeros(1, 2, 4), torch.ones(1, 2, 8), 1, steps=5,
                             check_cancelled=check_cancelled)
    assert len(model.calls) == 2


def test_sampling_is_deterministic_for_a_seed():
    dit, context = tiny_dit(), torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(2))

    def run(seed):
        noise = initial_noise((3, 6, 4), torch.Generator().manual_seed(seed))
        return FlowSampler().sample(dit, noise, context, torch.tensor([2, 1]), steps=3)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_bad_scheduler_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="use_dynamic_shifting is not supported"):
        FlowSampler(FlowSchedulerConfig(use_dynamic_shifting=True))
    with pytest.raises(ValueError, match="at least one step"):
        FlowSampler().sigmas(0)
    with pytest.raises(CheckpointError, match="scheduler_config.json not found"):
        FlowSampler.from_pretrained(tmp_path)


def test_strength_starts_from_known_latents_noised_to_the_first_sigma():
    sampler = FlowSampler()
    sigmas = sampler.sigmas(4, strength=0.5)
    assert torch.allclose(sigmas, torch.tensor([0.5, 0.375, 0.25, 0.125, 0.0]))
    noise = initial_noise((2, 3, 4), generator=torch.Generator().manual_seed(0))
    init = torch.full_like(noise, 2.0)
    still = lambda latents, t, context, counts: torch.zeros_like(latents)  # v = 0: x stays put
    out = sampler.sample(still, noise, torch.zeros(2, 1, 8), 2, steps=4, guidance=1.0,
                         init=init, strength=0.5)
    assert torch.allclose(out, 0.5 * init + 0.5 * noise)
    # the flow's own v = x0 - noise, with x0 = init: Euler lands exactly on the start latents
    def oracle(latents, t, context, counts):
        sigma = t[:, None, None] / 1000
        return init - (latents - (1 - sigma) * init) / sigma

    out = sampler.sample(oracle, noise, torch.zeros(2, 1, 8), 2, steps=3, guidance=1.0,
                         init=init, strength=0.6)
    assert torch.allclose(out, init, atol=1e-5)
    with pytest.raises(ValueError, match="go with a strength below 1"):
        sampler.sample(still, noise, torch.zeros(2, 1, 8), 2, steps=2, init=init)
    with pytest.raises(ValueError, match="strength must be in"):
        sampler.sigmas(2, strength=1.5)
    with pytest.raises(ValueError, match="do not match"):
        sampler.sample(still, noise, torch.zeros(2, 1, 8), 2, steps=2, init=init[:1],
                       strength=0.5)
