import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.cli import main
from engine.retrieval.hcr import HCR, NO_ID, HCRConfig, HCRTrainer, Queue, info_nce
from engine.training.retriever import RetrievalExamples, load_recipe, train_retriever
from engine.training.loop import TrainConfig
from retrieval_data import write_rendered_dataset, write_tiny_vae

torch.set_num_threads(1)
TINY = HCRConfig(token_dim=12, latent_dim=6, embed_dim=8, hidden_dim=16, part_queries=4,
                 attention_dim=8, queue_size=10)


def test_info_nce_with_one_positive_is_cross_entropy_and_stable():
    torch.manual_seed(0)
    q, k = torch.randn(5, 8), torch.randn(7, 8)
    eye = torch.zeros(5, 7, dtype=torch.bool)
    eye[range(5), range(5)] = True
    valid = torch.ones(7, dtype=torch.bool)
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T / 0.07
    expected = F.cross_entropy(logits, torch.arange(5))
    torch.testing.assert_close(info_nce(q, k, eye, valid, 0.07), expected)
    # Far below float32's exp range at this temperature: the max shift keeps it finite.
    tiny = info_nce(q, k, eye, valid, 1e-4)
    assert torch.isfinite(tiny)


def test_info_nce_sums_several_positives_and_ignores_empty_keys():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])
    positive = torch.tensor([[True, True, False, False]])
    valid = torch.tensor([True, True, True, False])
    s = torch.tensor([1.0, 0.0, -1.0]) / 0.5
    expected = -torch.log(s.softmax(0)[:2].sum())
    torch.testing.assert_close(info_nce(q, k, positive, valid, 0.5), expected)


def test_queue_is_a_fifo_of_the_latest_entries():
    queue = Queue(4, 2)
    for start in (0, 3):
        ids = torch.arange(start, start + 3)
        queue.push(ids[:, None].float().expand(-1, 2), -ids[:, None].float().expand(-1, 2), ids)
    assert sorted(queue.ids.tolist()) == [2, 3, 4, 5]  # 0 and 1, the oldest, are gone
    assert (queue.shape[:, 0] == -queue.ids.float()).all()
    queue.push(torch.zeros(6, 2), torch.zeros(6, 2), torch.arange(10, 16))
    assert sorted(queue.ids.tolist()) == [12, 13, 14, 15]


def synthetic_batch(rng, size=6, parts=3, tokens=16, config=TINY):
    """Parts whose tokens and latents both depend on their label (0-4), so they can align."""
    labels = rng.integers(0, 5, (size, parts))
    label_tokens = rng.normal(size=(5, config.token_dim))
    label_latents = rng.normal(size=(5, config.latent_dim))
    cover = np.zeros((size, parts, tokens))
    token_values = rng.normal(size=(size, tokens, config.token_dim)) * 0.1
    for b in range(size):
        for p in range(parts):
            cells = slice(p * 5, p * 5 + 5)
            cover[b, p, cells] = 1.0
            token_values[b, cells] += label_tokens[labels[b, p]]
    t = lambda x, dtype=torch.float32: torch.tensor(x, dtype=dtype)  # noqa: E731
    return {"tokens": t(token_values), "cover": t(cover),
            "visible": t(cover.sum(-1) > 0, torch.bool),
            "exists": torch.ones(size, parts, dtype=torch.bool), "labels": t(labels, torch.long),
            "shape": t(label_latents[labels]
                       + rng.normal(size=(size, parts, config.latent_dim)) * 0.1),
            "instance": t(rng.integers(0, 100, size), torch.long)}


def test_trainer_updates_momentum_and_queues_only_when_training():
    torch.manual_seed(0)
    trainer = HCRTrainer(HCR(TINY))
    batch = synthetic_batch(np.random.default_rng(0))
    with torch.no_grad():
        losses = trainer.losses(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert (trainer.part_queue.ids == NO_ID).all()  # validation changed nothing
    with torch.no_grad():
        trainer.model.image_part[1].weight.add_(1.0)
    before = trainer.momentum.image_part[1].weight.clone()
    online = trainer.model.image_part[1].weight.clone()
    losses = trainer.losses(batch)
    losses["loss"].backward()
    m = TINY.momentum
    torch.testing.assert_close(trainer.momentum.image_part[1].weight, m * before + (1 - m) * online)
    assert (trainer.part_queue.ids != NO_ID).sum() == 10  # 18 part keys, queue of 10
    assert (trainer.object_queue.ids != NO_ID).sum() == 6
    torch.testing.assert_close(losses["hcr"], TINY.lambda_part * losses["part"]
                               + TINY.lambda_obj * losses["object"])
    assert trainer.model.part_queries.queries.grad is not None


def test_training_aligns_parts_with_their_latents():
    torch.manual_seed(0)
    trainer = HCRTrainer(HCR(TINY))
    optimizer = torch.optim.Adam(trainer.model.parameters(), lr=3e-3)
    rng = np.random.default_rng(1)
    batch = synthetic_batch(rng)
    with torch.no_grad():
        first = trainer.losses(batch)["part"]
    for _ in range(60):
        loss = trainer.losses(synthetic_batch(rng))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = trainer.losses(batch)["part"]
    assert last < 0.7 * first


def test_save_and_load_round_trip(tmp_path):
    model = HCR(TINY)
    model.save_pretrained(tmp_path / "hcr")
    loaded = HCR.from_pretrained(tmp_path / "hcr")
    assert loaded.config == TINY
    x = torch.randn(3, TINY.token_dim)
    torch.testing.assert_close(loaded.embed("part", "image", x), model.embed("part", "image", x))
    assert torch.allclose(loaded.embed("object", "shape", torch.randn(2, 6)).norm(dim=-1),
                          torch.ones(2))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    return write_rendered_dataset(root / "dataset"), write_tiny_vae(root / "vae")


def test_train_retriever_command_builds_features_trains_and_exports(data, tmp_path):
    dataset, vae = data
    out, export = tmp_path / "run", tmp_path / "hcr"
    args = ["train", "retriever", "--data", str(dataset), "--vae", str(vae), "--out", str(out),
            "--config", "tiny", "--steps", "6", "--export", str(export), "--threads", "1",
            "--device", "cpu", "--queue", "16"]
    assert main(args) == 0
    model = HCR.from_pretrained(export)
    assert model.config.token_dim == 1280 and model.config.latent_dim == 4
    assert model.config.queue_size == 16 and (export / "MODEL_CARD.md").is_file()
    cache = dataset / "retrieval_cache" / "efficientnet-lite0"
    examples = RetrievalExamples(cache / "train.safetensors")
    batch = examples.batch(np.random.default_rng(0), 3)
    assert batch["tokens"].shape == (3, 64, 1280) and batch["cover"].shape[1:] == (8, 64)
    assert (batch["visible"] <= batch["exists"]).all()
    # Resuming a finished run does nothing more; a changed recipe is refused.
    assert main(args + ["--resume"]) == 0
    recipe = load_recipe("tiny")
    with pytest.raises(ValueError, match="another recipe"):
        train_retriever(cache / "train.safetensors", cache / "val.safetensors",
                        out, recipe, TrainConfig(steps=7), "efficientnet-lite0", device="cpu",
                        resume=True, progress=False)
