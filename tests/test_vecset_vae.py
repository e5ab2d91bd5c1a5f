import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.models.checkpoint import CheckpointError
from engine.models.vecset_vae import VecSetVAE, VecSetVAEConfig
from parity_fixture import (FIXTURE, TOLERANCE, assert_loading_leaves_folder_untouched,
                            assert_matches_public_listing, needs_fixture, needs_listing,
                            public_listing)


@pytest.fixture(scope="module")
def vae():
    return VecSetVAE.from_pretrained(FIXTURE / "vae")


def encode_fixture(vae, io):
    with torch.no_grad():
        return vae.encode(io["vae_in_points"], query_index=io["vae_in_query_index"])


def decode_fixture(vae, io, **options):
    with torch.no_grad():
        return vae.decode(io["vae_dec_in_latents"], io["vae_dec_in_queries"], **options)


def tiny_vae():
    torch.manual_seed(0)
    return VecSetVAE(VecSetVAEConfig(latent_channels=4, num_attention_heads=2, width_encoder=16,
                                     width_decoder=16, num_layers_encoder=1,
                                     num_layers_decoder=1, embed_frequency=2))


@needs_fixture
def test_encoder_reproduces_reference_moments(vae, io):
    moments = encode_fixture(vae, io).moments
    assert moments.shape == io["vae_out_moments"].shape
    assert (moments - io["vae_out_moments"]).abs().max() <= TOLERANCE


@needs_fixture
def test_decoder_reproduces_reference_logits(vae, io):
    logits = decode_fixture(vae, io)
    assert logits.shape == io["vae_dec_out_logits"].shape
    assert (logits - io["vae_dec_out_logits"]).abs().max() <= TOLERANCE


@needs_fixture
def test_decoding_in_chunks_changes_nothing(vae, io):
    assert torch.allclose(decode_fixture(vae, io, chunk_size=7), decode_fixture(vae, io),
                          atol=1e-6)


@needs_fixture
def test_field_of_one_shape_equals_decode(vae, io):
    latents, queries = io["vae_dec_in_latents"], io["vae_dec_in_queries"]
    with torch.no_grad():
        field = vae.field(latents, chunk_size=7)
        torch.testing.assert_close(field(queries[0]), vae.decode(latents, queries)[0, :, 0],
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="one shape"):
        vae.field(latents.expand(2, -1, -1))


@needs_fixture
def test_save_and_load_round_trip(vae, io, tmp_path):
    vae.save_pretrained(tmp_path / "vae")
    again = VecSetVAE.from_pretrained(tmp_path / "vae")
    assert torch.equal(encode_fixture(again, io).moments, encode_fixture(vae, io).moments)
    assert torch.equal(decode_fixture(again, io), decode_fixture(vae, io))
    original = json.loads((FIXTURE / "vae" / "config.json").read_text())
    assert json.loads((tmp_path / "vae" / "config.json").read_text()) == original


def test_unknown_config_keys_are_kept(tmp_path):
    tiny_vae().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "TripoSGVAEModel"
    config["grad_type"] = "analytical"
    (tmp_path / "config.json").write_text(json.dumps(config))
    VecSetVAE.from_pretrained(tmp_path).save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == config


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="config.json not found"):
        VecSetVAE.from_pretrained(tmp_path)


def test_unreadable_weights_are_refused(tmp_path):
    tiny_vae().save_pretrained(tmp_path)
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        VecSetVAE.from_pretrained(tmp_path)


def test_weights_that_do_not_fit_are_refused_with_the_keys(tmp_path):
    tiny_vae().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "diffusion_pytorch_model.safetensors")
    weights["decoder.extra.weight"] = weights.pop("quant.bias")
    weights["post_quant.weight"] = torch.zeros(3, 3)
    save_file(weights, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError) as error:
        VecSetVAE.from_pretrained(tmp_path)
    message = str(error.value)
    assert "missing keys (1): quant.bias" in message
    assert "unexpected keys (1): decoder.extra.weight" in message
    assert "shape mismatches (1): post_quant.weight (3, 3) (expected (16, 4))" in message


def test_config_that_does_not_describe_the_weights_is_refused(tmp_path):
    tiny_vae().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_layers_decoder"] = 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing keys \(22\): decoder\.blocks\.1\.attn1"):
        VecSetVAE.from_pretrained(tmp_path)


@needs_listing
def test_full_size_parameters_match_the_public_checkpoint():
    with torch.device("meta"):
        model = VecSetVAE()
    assert_matches_public_listing(model, public_listing("vae"))


def test_sampled_query_subset_is_spread_and_seeded():
    vae = tiny_vae()
    points = torch.rand(2, 200, 6)
    index = vae.sample_query_index(points, 8, torch.Generator().manual_seed(1))
    again = vae.sample_query_index(points, 8, torch.Generator().manual_seed(1))
    assert index.shape == (2, 8) and torch.equal(index, again)
    assert all(len(set(row.tolist())) == 8 for row in index)
    few = vae.sample_query_index(points[:, :20], 8, torch.Generator().manual_seed(1))
    assert few.shape == (2, 8) and int(few.max()) < 20  # 32 candidates drawn from 20 points


def test_encode_with_a_token_count_and_sample():
    vae = tiny_vae()
    with torch.no_grad():
        posterior = vae.encode(torch.rand(2, 100, 6), 8, generator=torch.Generator().manual_seed(0))
    assert posterior.moments.shape == (2, 8, 8) and posterior.mean.shape == (2, 8, 4)
    first = posterior.sample(torch.Generator().manual_seed(5))
    assert torch.equal(first, posterior.sample(torch.Generator().manual_seed(5)))
    assert vae.decode(first, torch.rand(2, 30, 3)).shape == (2, 30, 1)
    with pytest.raises(ValueError, match="exactly one"):
        vae.encode(torch.rand(1, 100, 6))


def test_log_variance_is_clamped():
    vae = tiny_vae()
    with torch.no_grad():
        vae.quant.bias[4:] = 100.0
        posterior = vae.encode(torch.rand(1, 50, 6), query_index=torch.arange(4))
    assert posterior.moments[..., 4:].min() > 20 and posterior.logvar.max() == 20.0


@needs_fixture
def test_shipped_fixture_folder_is_untouched_by_loading(tmp_path):
    assert_loading_leaves_folder_untouched(VecSetVAE.from_pretrained, "vae", tmp_path)
