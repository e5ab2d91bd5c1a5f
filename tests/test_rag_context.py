import shutil

import pytest
import torch

from engine.models.flow_sampler import FlowSampler
from engine.models.rag_context import (RetrievalContext, RetrievalContextConfig, fuse_context,
                                       per_part_rows)
from parity_fixture import FIXTURE, needs_fixture

pytestmark = needs_fixture


def projection_for(dit, latent_channels=8):
    torch.manual_seed(3)
    return RetrievalContext(RetrievalContextConfig(latent_channels, dit.config.cross_attention_dim))


def exemplars(objects, k, width, latent_channels=8, seed=4):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(objects, k, 5, width, generator=generator),
            torch.randn(objects, k, 7, latent_channels, generator=generator))


def query(io):
    """One object's query tokens: the fixture's first context row."""
    return io["dit_in_context"][:1]


def denoise(dit, io, context_per_object):
    rows = io["dit_in_latents"].shape[0]
    with torch.no_grad():
        return dit(io["dit_in_latents"], io["dit_in_timestep"],
                   per_part_rows(context_per_object, rows), rows)


def test_no_exemplars_leave_the_query_tokens_as_they_are(io, dit):
    tokens = query(io)
    images, latents = exemplars(1, 0, tokens.shape[-1])
    assert fuse_context(tokens) is tokens
    fused = fuse_context(tokens, images, latents, projection_for(dit))
    assert fused is tokens
    assert torch.equal(denoise(dit, io, fused), denoise(dit, io, tokens))


def test_k_zero_sampling_is_plain_partcrafter(io, dit):
    sampler, noise = FlowSampler.from_pretrained(FIXTURE / "scheduler"), io["sample_init_latents"]
    rows = noise.shape[0]
    images, latents = exemplars(1, 0, query(io).shape[-1])
    fused = fuse_context(query(io), images, latents, projection_for(dit))
    plain = sampler.sample(dit, noise, per_part_rows(query(io), rows), rows, steps=3)
    assert torch.equal(sampler.sample(dit, noise, per_part_rows(fused, rows), rows, steps=3),
                       plain)


def test_retrieved_exemplars_extend_the_context_and_change_the_output(io, dit):
    tokens = query(io)
    images, latents = exemplars(1, 2, tokens.shape[-1])
    fused = fuse_context(tokens, images, latents, projection_for(dit))
    assert fused.shape == (1, 10 + 2 * (5 + 7), 32)
    assert torch.equal(fused[:, :10], tokens)
    assert torch.equal(fused[:, 10:15], images[:, 0]) and torch.equal(fused[:, 22:27], images[:, 1])
    assert not torch.allclose(denoise(dit, io, fused), denoise(dit, io, tokens), atol=1e-4)
    images_only = fuse_context(tokens, images)
    assert images_only.shape == (1, 20, 32)
    assert not torch.allclose(denoise(dit, io, images_only), denoise(dit, io, fused), atol=1e-4)


def test_zero_context_is_the_same_unconditional_branch_at_any_length(io, dit):
    short, long = torch.zeros(1, 10, 32), torch.zeros(1, 34, 32)
    assert torch.allclose(denoise(dit, io, short), denoise(dit, io, long), atol=1e-6)


def test_context_goes_to_every_part_row_of_its_object():
    context = torch.arange(2.0)[:, None, None].expand(2, 3, 4)
    rows = per_part_rows(context, torch.tensor([2, 3]))
    assert rows.shape == (5, 3, 4) and rows[:, 0, 0].tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="3 part counts for 2 objects"):
        per_part_rows(context, torch.tensor([1, 1, 1]))


def test_bad_retrieval_inputs_are_refused(io, dit):
    tokens, projection = query(io), projection_for(dit)
    images, latents = exemplars(1, 2, 32)
    with pytest.raises(ValueError, match="need the RetrievalContext projection"):
        fuse_context(tokens, images, latents)
    with pytest.raises(ValueError, match=r"retrieved images must be \(1 objects, k, tokens, 32\)"):
        fuse_context(tokens, images[..., :16])
    with pytest.raises(ValueError, match=r"retrieved latents must be \(1 objects, k, tokens, 8\)"):
        fuse_context(tokens, None, latents[..., :3], projection)
    with pytest.raises(ValueError, match=r"disagree on k: \[1, 2\]"):
        fuse_context(tokens, images[:, :1], latents, projection)


def test_projection_is_saved_beside_the_public_folders(io, dit, tmp_path):
    public = tmp_path / "model"
    shutil.copytree(FIXTURE / "transformer", public / "transformer")
    assert RetrievalContext.beside(public) is None  # public folder: k = 0 only
    projection = projection_for(dit)
    projection.save_pretrained(public / "rag")
    loaded = RetrievalContext.beside(public)
    _, latents = exemplars(1, 2, 32)
    with torch.no_grad():
        assert torch.equal(loaded(latents), projection(latents))
