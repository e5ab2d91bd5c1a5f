import json

import pytest
import torch

from engine.models.checkpoint import CheckpointError
from engine.models.dual_lane_dit import DualLaneDiT, DualLaneDiTConfig
from parity_fixture import (FIXTURE, TOLERANCE, assert_loading_leaves_folder_untouched,
                            assert_matches_public_listing, needs_fixture, needs_listing,
                            public_listing)


def tiny_dit(**overrides):
    torch.manual_seed(0)
    config = dict(num_attention_heads=2, width=16, in_channels=4, num_layers=5,
                  cross_attention_dim=8, max_num_parts=4, global_attn_block_ids=[0, 2, 4])
    return DualLaneDiT(DualLaneDiTConfig(**{**config, **overrides})).eval()


def run_single(dit, io):
    with torch.no_grad():
        return dit(io["dit_in_latents"], io["dit_in_timestep"], io["dit_in_context"],
                   io["dit_in_latents"].shape[0])


def random_inputs(rows, tokens=6, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, tokens, 4, generator=generator),
            torch.rand(rows, generator=generator) * 1000,
            torch.randn(rows, 3, 8, generator=generator))


@needs_fixture
def test_single_object_reproduces_reference(dit, io):
    out = run_single(dit, io)
    assert out.shape == io["dit_out"].shape
    assert (out - io["dit_out"]).abs().max() <= TOLERANCE


@needs_fixture
def test_stacked_objects_reproduce_reference(dit, io):
    with torch.no_grad():
        out = dit(io["ditb_in_latents"], io["ditb_in_timestep"], io["ditb_in_context"],
                  io["ditb_in_num_parts"])
    assert out.shape == io["ditb_out"].shape
    assert (out - io["ditb_out"]).abs().max() <= TOLERANCE


@needs_fixture
def test_save_and_load_round_trip(dit, io, tmp_path):
    dit.save_pretrained(tmp_path / "transformer")
    again = DualLaneDiT.from_pretrained(tmp_path / "transformer")
    assert torch.equal(run_single(again, io), run_single(dit, io))
    original = json.loads((FIXTURE / "transformer" / "config.json").read_text())
    assert json.loads((tmp_path / "transformer" / "config.json").read_text()) == original


@needs_fixture
def test_loading_leaves_the_fixture_folder_untouched(tmp_path):
    assert_loading_leaves_folder_untouched(DualLaneDiT.from_pretrained, "transformer", tmp_path)


def test_objects_with_different_part_counts_batch_like_each_alone():
    dit = tiny_dit()
    counts = [2, 3, 1, 2]
    latents, timestep, context = random_inputs(sum(counts))
    with torch.no_grad():
        batched = dit(latents, timestep, context, torch.tensor(counts))
        alone = [dit(*(tensor[start:start + n] for tensor in (latents, timestep, context)), n)
                 for start, n in zip([0, 2, 5, 6], counts)]
    assert torch.allclose(batched, torch.cat(alone), atol=1e-6)


def test_global_blocks_mix_parts_and_local_blocks_do_not():
    latents, timestep, context = random_inputs(3)
    changed = latents.clone()
    changed[2] += 1.0
    for ids, mixes in [([0, 2, 4], True), ([], False)]:
        dit = tiny_dit(global_attn_block_ids=ids, enable_part_embedding=False)
        with torch.no_grad():
            before = dit(latents, timestep, context, 3)
            after = dit(changed, timestep, context, 3)
        assert torch.equal(before[:2], after[:2]) != mixes


def test_global_block_range_includes_both_ends():
    config = DualLaneDiTConfig(num_layers=6, global_attn_block_id_range=[1, 3])
    assert config.global_blocks() == {1, 2, 3}
    with pytest.raises(ValueError, match=r"global attention block ids \[7\]"):
        tiny_dit(global_attn_block_ids=[0, 7])


def test_disabled_cross_attention_lanes_ignore_the_context():
    dit = tiny_dit(enable_local_cross_attn=False, enable_global_cross_attn=False)
    latents, timestep, context = random_inputs(3)
    with torch.no_grad():
        assert torch.equal(dit(latents, timestep, context, 3),
                           dit(latents, timestep, torch.zeros_like(context), 3))


def test_gradients_reach_every_parameter():
    dit = tiny_dit().train()
    latents, timestep, context = random_inputs(5)
    dit(latents, timestep, context, torch.tensor([2, 3])).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dit.parameters())


def test_bad_inputs_are_refused_with_the_reason():
    dit = tiny_dit()
    latents, timestep, context = random_inputs(4)
    with pytest.raises(ValueError, match="add up to the 4 latent rows"):
        dit(latents, timestep, context, 2)
    with pytest.raises(ValueError, match=r"part counts \[1, 2\] must be positive"):
        dit(latents, timestep, context, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="1-D integer tensor"):
        dit(latents, timestep, context, torch.tensor([2.0, 2.0]))
    with pytest.raises(ValueError, match="max_num_parts=4"):
        dit(*random_inputs(5), 5)
    with pytest.raises(ValueError, match=r"context must be \(4 rows, length, 8\)"):
        dit(latents, timestep, context[:, :, :5], 4)
    with pytest.raises(ValueError, match=r"latents must be \(rows, tokens, 4\)"):
        dit(latents[..., :3], timestep, context, 4)
    with pytest.raises(ValueError, match="timestep must be a number or one per row"):
        dit(latents, timestep[:2], context, 4)
    with torch.no_grad():
        assert torch.equal(dit(latents, 500.0, context, 4),
                           dit(latents, torch.full((4,), 500.0), context, 4))


def test_unknown_config_keys_are_kept(tmp_path):
    tiny_dit().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "PartCrafterDiTModel"
    config["_diffusers_version"] = "0.42.1"
    (tmp_path / "config.json").write_text(json.dumps(config))
    DualLaneDiT.from_pretrained(tmp_path).save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == config


def test_config_that_does_not_describe_the_weights_is_refused(tmp_path):
    tiny_dit().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_layers"] = 6  # block 3 loses its long skip, a block 5 appears
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as error:
        DualLaneDiT.from_pretrained(tmp_path)
    message = str(error.value)
    assert "does not fit DualLaneDiT with its config.json" in message
    assert "missing keys (28): blocks.5." in message
    assert "unexpected keys (4): blocks.3.skip_linear.bias" in message
    config.update(num_layers=5, cross_attention_dim=6)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn2\.to_k\.weight \(16, 8\) "
                                              r"\(expected \(16, 6\)\)"):
        DualLaneDiT.from_pretrained(tmp_path)


def test_config_naming_missing_blocks_is_refused(tmp_path):
    tiny_dit().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["global_attn_block_ids"] = [0, 9]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: global attention block ids \[9\] "
                                              r"are outside the 5 blocks"):
        DualLaneDiT.from_pretrained(tmp_path)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="config.json not found"):
        DualLaneDiT.from_pretrained(tmp_path)


@needs_listing
def test_full_size_parameters_match_the_public_checkpoint():
    listing = public_listing("transformer")
    with torch.device("meta"):
        model = DualLaneDiT(DualLaneDiTConfig(**listing["config_defaults"]))
    assert_matches_public_listing(model, listing)
