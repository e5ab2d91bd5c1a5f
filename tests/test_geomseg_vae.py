import json

import pytest
import torch

from engine.models.geomseg_vae import (GeomSegVAE, assign_latents, latent_assignment_accuracy,
                                       mask_nms, part_codes, segmentation_miou)
from engine.models.vecset_vae import VecSetVAE, VecSetVAEConfig

TOKENS = 32
# a table: top slab and two legs, apart from each other
BOXES = [((0.0, 0.5, 0.0), (0.8, 0.15, 0.5)),
         ((-0.5, -0.35, 0.0), (0.15, 0.55, 0.15)),
         ((0.5, -0.35, 0.0), (0.15, 0.55, 0.15))]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops on 2 shared cores: OpenMP fork/join costs more than it saves (x50 measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vae():
    torch.manual_seed(0)
    return VecSetVAE(VecSetVAEConfig(latent_channels=8, num_attention_heads=2, width_encoder=32,
                                     width_decoder=32, num_layers_encoder=1,
                                     num_layers_decoder=1, embed_frequency=4))


def tiny_model(vae=None):
    return GeomSegVAE.from_vecset(vae or tiny_vae(), num_tokens=TOKENS, seg_width=32,
                                  seg_heads=2, seg_layers=1, prompt_layers=1, pos_width=64,
                                  train_prompts=TOKENS)


def box_surface(center, half, count, generator):
    """Points and outward normals uniformly over a box's surface."""
    center, half = torch.tensor(center), torch.tensor(half)
    areas = torch.stack([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    axis = torch.multinomial(areas, count, replacement=True, generator=generator)
    sign = torch.randint(2, (count,), generator=generator) * 2.0 - 1.0
    unit = torch.rand(count, 3, generator=generator) * 2 - 1
    unit[torch.arange(count), axis] = sign
    normals = torch.zeros(count, 3)
    normals[torch.arange(count), axis] = sign
    return center + half * unit, normals


def boxes_batch(batch=1, points_per_box=200, num_queries=512, seed=0):
    generator = torch.Generator().manual_seed(seed)
    xyz, normals, labels = [], [], []
    for label, (center, half) in enumerate(BOXES):
        p, n = box_surface(center, half, points_per_box * batch, generator)
        xyz.append(p.view(batch, -1, 3))
        normals.append(n.view(batch, -1, 3))
        labels.append(torch.full((batch, points_per_box), label))
    xyz, normals, labels = torch.cat(xyz, 1), torch.cat(normals, 1), torch.cat(labels, 1)
    queries = torch.cat([torch.rand(batch, num_queries // 2, 3, generator=generator) * 2 - 1,
                         xyz[:, :num_queries // 2] + 0.05 * torch.randn(
                             batch, num_queries // 2, 3, generator=generator)], 1)
    inside = torch.zeros(batch, num_queries, dtype=torch.bool)
    for center, half in BOXES:
        inside |= ((queries - torch.tensor(center)).abs() <= torch.tensor(half)).all(-1)
    codes = part_codes(labels, generator)
    return {"points": torch.cat([xyz, normals, codes.unsqueeze(-1)], -1),
            "part_labels": labels, "queries": queries, "occupancy": inside.float()}


def test_shapes():
    model = tiny_model()
    batch = boxes_batch(batch=2)
    posterior, query_index = model.encode(batch["points"])
    assert posterior.mean.shape == (2, TOKENS, 8) and query_index.shape == (2, TOKENS)
    latents = posterior.mean
    dense = torch.arange(TOKENS).expand(2, -1)
    logits, scores = model.segment(latents, dense)
    assert logits.shape == (2, TOKENS, TOKENS) and scores.shape == (2, TOKENS)
    assert model.predict_anchors(latents).shape == (2, TOKENS, 3)
    assert model.decode(latents, batch["queries"]).shape == (2, 512, 1)
    parts = model.segment_latents(latents, num_prompts=8)
    assert parts.shape == (2, TOKENS) and parts.dtype == torch.int64
    assert model.segment_latents(latents[0], num_prompts=8).shape == (TOKENS,)


def test_from_vecset_starts_as_the_plain_vae():
    vae = tiny_vae()
    model = tiny_model(vae)
    batch = boxes_batch(batch=2)
    query_index = model.sample_query_index(batch["points"])
    with torch.no_grad():
        posterior, _ = model.encode(batch["points"], query_index)
        plain = vae.encode(batch["points"][..., :6], query_index=query_index)
        assert torch.equal(posterior.moments, plain.moments)
        recoded = batch["points"].clone()
        recoded[..., 6] = -recoded[..., 6]
        assert torch.equal(model.encode(recoded, query_index)[0].moments, plain.moments)
        assert torch.equal(model.decode(plain.mean, batch["queries"]),
                           vae.decode(plain.mean, batch["queries"]))
    assert model.vae is not vae  # fine-tuning leaves the plain VAE alone


def test_losses_are_finite_and_backpropagate():
    model = tiny_model()
    losses = model.losses(boxes_batch(batch=2), torch.Generator().manual_seed(1))
    assert set(losses) == {"loss", "recon", "kl", "seg", "pos"}
    assert all(torch.isfinite(value) for value in losses.values())
    losses["loss"].backward()
    assert model.label_in.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_position_loss_leaves_the_encoder_alone():
    model = tiny_model()
    model.losses(boxes_batch())["pos"].backward()
    groups = model.parameter_groups()
    assert all(p.grad is None for p in groups["encoder"] + groups["segmentation_decoder"])
    assert all(p.grad is not None for p in groups["position_decoder"])
    grouped = [id(p) for group in groups.values() for p in group]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_part_codes_are_evenly_spaced_per_sample():
    labels = torch.tensor([[3, 3, 7, 9, 7], [1, 1, 1, 1, 1]])
    codes = part_codes(labels, torch.Generator().manual_seed(0))
    assert sorted(codes[0].unique().tolist()) == [-1.0, 0.0, 1.0]
    assert codes[0, 0] == codes[0, 1] and codes[0, 2] == codes[0, 4]
    assert codes[1].eq(0).all()


def test_overfits_three_boxes():
    model = tiny_model()
    batch = boxes_batch(batch=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(120):
        optimiser.zero_grad()
        model.losses(batch, generator)["loss"].backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        posterior, query_index = model.encode(batch["points"], generator=generator)
        parts = model.segment_latents(posterior.mean[0], num_prompts=8)
    gt = batch["part_labels"][0, query_index[0]]
    assert latent_assignment_accuracy(parts, gt) > 0.9


def test_mask_nms_keeps_best_of_overlaps_and_drops_tiny():
    masks = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0],   # A
                          [1, 1, 1, 0, 0, 0, 0, 0],   # overlaps A (IoU 0.75)
                          [0, 0, 0, 0, 1, 1, 1, 0],   # B
                          [0, 0, 0, 0, 0, 0, 0, 1],   # tiny
                          [0, 0, 0, 1, 1, 0, 0, 0]],  # IoU 0.2 with A, 0.25 with B
                         dtype=torch.bool)
    scores = torch.tensor([0.5, 0.9, 0.8, 1.0, 0.1])
    assert mask_nms(masks, scores, 0.5, min_size=2).tolist() == [1, 2, 4]
    assert mask_nms(masks, scores, 0.1, min_size=2).tolist() == [1, 2]


def test_assign_latents_uses_highest_logit_then_nearest_mask():
    anchors = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [2.9, 0, 0]])
    logits = torch.tensor([[5.0, 1.0, -1.0, -1.0, -2.0],
                           [-5.0, 2.0, 3.0, -1.0, -2.0],
                           [-5.0, -1.0, -1.0, -1.0, -3.0]])  # covers nothing: vanishes
    assert assign_latents(logits, anchors).tolist() == [0, 1, 1, 1, 1]
    assert assign_latents(logits[:0], anchors).tolist() == [0] * 5


def test_accuracy_and_miou():
    gt = torch.tensor([0, 0, 1, 1, 2, 2])
    assert latent_assignment_accuracy(gt, gt) == 1.0 and segmentation_miou(gt, gt) == 1.0
    permuted = torch.tensor([5, 5, 3, 3, 0, 0])
    assert latent_assignment_accuracy(permuted, gt) == 1.0
    assert segmentation_miou(permuted, gt) == 1.0
    merged = torch.tensor([0, 0, 1, 1, 1, 1])
    assert latent_assignment_accuracy(merged, gt) == pytest.approx(4 / 6)
    assert segmentation_miou(merged, gt) == pytest.approx((1 + 0.5 + 0) / 3)
    split = torch.tensor([0, 1, 2, 2, 3, 3])  # an extra segment costs the latents it holds
    assert latent_assignment_accuracy(split, gt) == pytest.approx(5 / 6)
    assert segmentation_miou(split, gt) == pytest.approx((0.5 + 1 + 1) / 3)


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model().eval()
    batch = boxes_batch()
    model.save_pretrained(tmp_path / "geomseg")
    again = GeomSegVAE.from_pretrained(tmp_path / "geomseg")
    assert again.config == model.config
    query_index = model.sample_query_index(batch["points"])
    with torch.no_grad():
        latents = model.encode(batch["points"], query_index)[0].mean
        assert torch.equal(again.encode(batch["points"], query_index)[0].mean, latents)
        prompts = torch.arange(TOKENS).expand(1, -1)
        assert all(torch.equal(a, b) for a, b in zip(again.segment(latents, prompts),
                                                     model.segment(latents, prompts)))
        assert torch.equal(again.predict_anchors(latents), model.predict_anchors(latents))
        plain = VecSetVAE.from_pretrained(tmp_path / "geomseg" / "vae")
        assert torch.equal(plain.decode(latents, batch["queries"]),
                           model.decode(latents, batch["queries"]))
    config = json.loads((tmp_path / "geomseg" / "seg" / "config.json").read_text())
    assert config["_class_name"] == "GeomSegVAE" and config["num_tokens"] == TOKENS
