"""PartRAG generator: flow conventions, DiT training (resume), the pipeline, the generate
CLI and the engine server's generate, all on a tiny random bundle built through the real
training and export code."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.pipelines.decode import ExtractSettings
from engine.render.image_prep import ImageError, frame_object, to_rgba
from engine.pipelines.partrag import PartRAGPipeline
from engine.training import dit_data
from engine.training.dit import RECIPES, dit_losses, train_dit
from engine.training.flow_matching import (flow_target, logit_normal_sigmas, noisy_latents,
                                           per_row)
from partrag_world import build_world, install_models, reference_image

FAST = ExtractSettings(resolution=32, coarse_resolution=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("partrag"))


@pytest.fixture(scope="module")
def pipeline(world):
    return PartRAGPipeline.from_pretrained(world["bundle"], extract=FAST, library=None)


# ------------------------------------------------------------------ flow conventions


def test_flow_convention_and_euler_inverse():
    x0, noise = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    sigma = torch.tensor([0.0, 0.5, 1.0])
    x = noisy_latents(x0, noise, sigma)
    assert torch.equal(x[0], x0[0]) and torch.equal(x[2], noise[2])
    assert torch.allclose(x[1], 0.5 * x0[1] + 0.5 * noise[1])
    # One Euler step from σ to 0 with the true v lands on x0 (the sampler's convention).
    v = flow_target(x0, noise)
    assert torch.allclose(x + sigma[:, None, None] * v, x0, atol=1e-6)


def test_logit_normal_sigmas_are_shared_by_the_parts_of_an_object():
    sigma = torch.from_numpy(logit_normal_sigmas(np.random.default_rng(0), 20000))
    assert ((sigma > 0) & (sigma < 1)).all()
    assert abs(sigma.median().item() - 0.5) < 0.02
    assert abs(torch.logit(sigma).std().item() - 1.0) < 0.03
    low = logit_normal_sigmas(np.random.default_rng(0), 20000, mean=-1.0)
    assert abs(np.median(low) - 1 / (1 + np.e)) < 0.02
    rows = per_row(torch.tensor([0.1, 0.7]), torch.tensor([2, 3]))
    assert rows.tolist() == pytest.approx([0.1, 0.1, 0.7, 0.7, 0.7])


def test_training_step_uses_one_sigma_per_object_and_drops_conditions(world):
    objects = dit_data.load_cached(sorted((world["cache"] / "train").glob("*.npz")))
    bank = dit_data.build_bank(objects, dit_data.BankOptions(**RECIPES["tiny"].bank))
    examples = dit_data.DiTExamples(objects, bank, 2, dit_data.label_vocabulary(objects))
    batch = examples.batch(np.random.default_rng(0), 3, k=2)
    assert batch["exemplar_latents"].shape[:2] == (3, 2)
    batch["drop"] = torch.tensor([0.05, 0.5, 0.9])  # the first object's condition is dropped
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, latents, timestep, context, num_parts):
            seen.update(timestep=timestep, context=context, counts=num_parts)
            return torch.zeros_like(latents, requires_grad=True)

    from engine.training.dit import make_model

    model = make_model(RECIPES["tiny"], objects[0].latents.shape[-1],
                       objects[0].tokens.shape[-1], 1, None)
    model.transformer = Recorder()
    dit_losses(model, batch, 0.1)
    groups = torch.split(seen["timestep"], seen["counts"].tolist())
    assert all(torch.all(g == g[0]) for g in groups)
    contexts = torch.split(seen["context"], seen["counts"].tolist())
    assert torch.all(contexts[0] == 0) and all(c.abs().sum() > 0 for c in contexts[1:])


def test_start_parts_pairs_each_target_part_with_its_nearest_exemplar_part():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(4, 6, 3)) + np.arange(4)[:, None, None] * 5.0
    shuffled = target[[2, 0, 3, 1]] + 0.01 * rng.normal(size=target.shape)
    other = rng.normal(size=(3, 6, 3))  # a 3-part asset ranks first but has the wrong count
    start = dit_data.start_parts([other, shuffled], target)
    np.testing.assert_allclose(start, target, atol=0.05)
    # Fewer exemplar parts than asked: parts repeat, every row filled.
    assert dit_data.start_parts([other], target).shape == target.shape


def test_bridge_paths_pass_where_retrieval_initialised_sampling_starts(world):
    """At σ = σ0 a bridge path's input is (1-σ0)·start + σ0·ε: the start of sampling from
    retrieved latents at strength σ0; its σ stays below σ0."""
    objects = dit_data.load_cached(sorted((world["cache"] / "train").glob("*.npz")))
    bank = dit_data.build_bank(objects, dit_data.BankOptions(**RECIPES["tiny"].bank))
    library = {o.name: o.latents.astype(np.float32) for o in objects}
    examples = dit_data.DiTExamples(objects, bank, 2, dit_data.label_vocabulary(objects),
                                    paths=dit_data.PathOptions(bridge_fraction=1.0),
                                    library=library)
    batch = examples.batch(np.random.default_rng(0), 3, k=2)
    assert batch["bridge"].all() and (batch["sigma"] < batch["start_sigma"]).all()
    assert examples.batch(np.random.default_rng(0), 3, k=0)["bridge"].sum() == 0
    batch["sigma"] = batch["start_sigma"].clone()
    batch["drop"] = torch.ones(3)
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, latents, timestep, context, num_parts):
            seen["latents"] = latents
            return torch.zeros_like(latents, requires_grad=True)

    from engine.training.dit import make_model

    model = make_model(RECIPES["tiny"], objects[0].latents.shape[-1],
                       objects[0].tokens.shape[-1], 1, None)
    model.transformer = Recorder()
    torch.manual_seed(5)
    dit_losses(model, batch, 0.1)
    torch.manual_seed(5)
    noise = torch.randn_like(batch["latents"])
    s0 = per_row(batch["start_sigma"], batch["counts"])[:, None, None]
    torch.testing.assert_close(seen["latents"], (1 - s0) * batch["start"] + s0 * noise,
                               atol=1e-5, rtol=1e-5)


def test_bundle_declares_the_latent_standardisation_it_was_trained_with(world, pipeline):
    from engine.models.latent_scale import LatentScale

    config = json.loads((world["bundle"] / "vae" / "config.json").read_text())
    assert len(config["latents_mean"]) == len(config["latents_std"]) == pipeline.vae.config.latent_channels
    assert not pipeline.scale.identity
    x = torch.randn(2, 5, pipeline.vae.config.latent_channels) * 3 + 1
    torch.testing.assert_close(pipeline.scale.denormalise(pipeline.scale.normalise(x)), x)
    fitted = LatentScale.fit(x.numpy())
    seen = fitted.normalise(x)
    assert seen.mean((0, 1)).abs().max() < 1e-5 and (seen.std((0, 1), unbiased=False) - 1).abs().max() < 1e-4
    assert LatentScale().normalise(x) is x  # a public VAE without statistics: unscaled


def test_bundle_guidance_default_is_declared_by_its_scheduler(world, tmp_path):
    """The pipeline resolves guidance: the bundle's scheduler/ `default_guidance` (the shipped
    CPU model declares 1), else the public checkpoints' 7 (a PartCrafter folder)."""
    import shutil

    from engine.models.flow_sampler import GUIDANCE_KEY
    from engine.pipelines.partrag import REFERENCE_GUIDANCE

    plain = PartRAGPipeline.from_pretrained(world["bundle"], extract=FAST)
    assert plain.default_guidance == REFERENCE_GUIDANCE
    bundle = tmp_path / "bundle"
    shutil.copytree(world["bundle"], bundle)
    config = json.loads((bundle / "scheduler" / "scheduler_config.json").read_text())
    (bundle / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({**config, GUIDANCE_KEY: 1.0}))
    declared = PartRAGPipeline.from_pretrained(bundle, extract=FAST)
    image = reference_image(world)
    assert declared.default_guidance == 1.0
    assert declared(image, 2, steps=1).params["guidance"] == 1.0
    assert declared(image, 2, steps=1, guidance=3.0).params["guidance"] == 3.0
    assert RECIPES["small"].guidance == 1.0 and RECIPES["tiny"].guidance is None


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("stage", [1, 2])
def test_resumed_training_equals_uninterrupted(world, tmp_path, monkeypatch, stage):
    recipe = RECIPES["tiny"]
    config = recipe.train_config(steps=4, checkpoint_every=100)
    run = lambda folder, resume=False: train_dit(world["data"], world["vae"], tmp_path / folder,
                                                 recipe, config, world["cache"], stage=stage,
                                                 device="cpu", resume=resume, progress=False)
    straight, _ = run("straight")
    original = dit_data.DiTExamples.batch
    calls = [0]

    def interrupted(self, rng, size, k=None):
        calls[0] += 1
        if calls[0] == 2:  # SIGINT during step 2: the loop stops after it
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, rng, size, k)

    monkeypatch.setattr(dit_data.DiTExamples, "batch", interrupted)
    first, _ = run("resumed")
    assert (first.step, first.finished) == (2, False)
    monkeypatch.setattr(dit_data.DiTExamples, "batch", original)
    resumed, _ = run("resumed", resume=True)
    assert (resumed.step, resumed.finished) == (4, True)
    for (name, a), b in zip(straight.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "resumed" / "loss.png").is_file()
    if stage == 2:
        assert "hcr" in resumed.log["train"][-1]


def test_bundle_layout_and_model_card(world):
    bundle = world["bundle"]
    for sub in ("transformer/config.json", "scheduler/scheduler_config.json", "rag/config.json",
                "rag/bank.npz", "rag/retrieval.json", "vae/config.json", "model_index.json"):
        assert (bundle / sub).is_file(), sub
    assert "Retrain: `python -m engine" in (bundle / "MODEL_CARD.md").read_text()


# ------------------------------------------------------------------ pipeline


def check_parts(generation, n):
    assert [p.index for p in generation.parts] == list(range(n))
    for p in generation.parts:
        assert p.vertices.dtype == np.float32 and p.vertices.ndim == 2 and len(p.vertices)
        assert p.faces.dtype == np.int32 and p.faces.min() >= 0
        assert p.faces.max() < len(p.vertices)
        assert p.transform.dtype == np.float64 and p.transform.shape == (4, 4)
        assert np.allclose(p.transform[:3, :3], np.eye(3))
        # local frame: origin at the bounding-box centre
        assert np.allclose((p.vertices.min(0) + p.vertices.max(0)) / 2, 0, atol=1e-5)
        assert isinstance(p.label, str) and p.label and isinstance(p.mesh_id, str)


def test_pipeline_returns_n_parts_deterministically(world, pipeline):
    image = reference_image(world)
    stages = []
    first = pipeline(image, 3, steps=2, seed=4, top_k=2,
                     progress=lambda stage, fraction: stages.append((stage, fraction)))
    check_parts(first, 3)
    assert len(first.retrieved) == 2
    assert [s for s, _ in stages][0] == "encode" and stages[-1] == ("decode", 1.0)
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions)
    again = pipeline(image, 3, steps=2, seed=4, top_k=2)
    for a, b in zip(first.parts, again.parts):
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.transform, b.transform)
    objects = dit_data.load_cached(sorted((world["cache"] / "train").glob("*.npz")))
    labels = {label for o in objects for label in o.labels}
    assert {p.label for p in first.parts} <= labels


def test_pipeline_without_retrieval_and_with_rgb_input(world, pipeline):
    rgba = reference_image(world)
    rgb = np.where(rgba[..., 3:] > 0, rgba[..., :3], 255).astype(np.uint8)
    generation = pipeline(rgb, 1, steps=1, seed=0, top_k=0)
    check_parts(generation, 1)
    assert generation.retrieved == []


def test_automatic_part_count_is_the_nearest_library_assets(world, pipeline):
    image = reference_image(world)
    for top_k in (2, 0):  # with k = 0 the bank is still asked, for labels and the count
        generation = pipeline(image, None, steps=1, seed=0, top_k=top_k)
        nearest = pipeline.retrieve(pipeline.encode(image), top_k)[2][0]
        count = int(pipeline.bank.part_count[nearest.index])
        check_parts(generation, count)
        assert generation.params["parts"] == count and generation.params["automatic_parts"]
    assert not pipeline(image, 2, steps=1, top_k=0).params["automatic_parts"]


def test_pipeline_cancels_between_steps(world, pipeline):
    class Stop(Exception):
        pass

    calls = [0]

    def check():
        calls[0] += 1
        if calls[0] == 4:
            raise Stop

    with pytest.raises(Stop):
        pipeline(reference_image(world), 2, steps=10, check_cancelled=check)
    assert calls[0] == 4


def test_pipeline_rejects_bad_requests(world, pipeline):
    with pytest.raises(ValueError, match="1 to 8 parts"):
        pipeline(reference_image(world), 9)
    with pytest.raises(ImageError, match="no uniform background"):
        pipeline(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8), 2)
    with pytest.raises(ImageError, match="no opaque"):
        pipeline(np.zeros((16, 16, 4), np.uint8), 2)


@pytest.fixture(scope="module")
def installed(world, tmp_path_factory):
    """A models/ folder as shipped: the bundle beside a library its bank was made from."""
    return install_models(world, tmp_path_factory.mktemp("installed"))


def test_library_bank_mirrors_the_library(installed):
    from engine.retrieval.exemplars import ExemplarBank
    from engine.retrieval.library import PartLibrary

    library = PartLibrary.load(installed / "library")
    bank = ExemplarBank.load(installed / "partrag" / "rag" / "bank.npz")
    assert list(bank.names) == library.ids
    for row in range(len(library)):
        latents = library.latents(row)
        assert bank.part_count[row] == len(latents)
        assert list(bank.labels[row][:len(latents)]) == library.assets[row]["labels"]
        assert np.allclose(bank.part_means[row, :len(latents)], latents.mean(1), atol=1e-2)
    settings = json.loads((installed / "partrag" / "rag" / "retrieval.json").read_text())
    assert settings["size"] == len(library) and settings["library"]


def test_generation_starts_from_retrieved_parts_with_the_library(installed, world):
    from engine.pipelines.partrag import DEFAULT_STRENGTH, installed_library
    from engine.retrieval.library import PartLibrary

    bundle = installed / "partrag"
    assert installed_library(bundle) == installed / "library"
    pipeline = PartRAGPipeline.from_pretrained(bundle, extract=FAST, library=installed_library(bundle))
    image = reference_image(world)
    generation = pipeline(image, 3, steps=2, seed=1, top_k=1)
    check_parts(generation, 3)
    assert generation.params["strength"] == DEFAULT_STRENGTH
    library = PartLibrary.load(installed / "library")
    hit = library.row(generation.retrieved[0]["asset_id"])
    labels = library.assets[hit]["labels"]
    assert [p.label for p in generation.parts] == [labels[i % len(labels)] for i in range(3)]
    again = pipeline(image, 3, steps=2, seed=1, top_k=1)
    assert all(np.array_equal(a.vertices, b.vertices) for a, b in zip(generation.parts, again.parts))
    assert pipeline(image, 2, steps=1, top_k=1, strength=1.0).params["strength"] == 1.0
    assert pipeline(image, 2, steps=1, top_k=0).params["strength"] == 1.0
    with pytest.raises(ValueError, match="needs top-k > 0"):
        pipeline(image, 2, steps=1, top_k=0, strength=0.5)


def test_sampling_starts_from_a_whole_exemplar_when_one_has_the_asked_part_count(installed):
    from engine.retrieval.exemplars import Hit
    from engine.pipelines.partrag import installed_library

    bundle = installed / "partrag"
    pipeline = PartRAGPipeline.from_pretrained(bundle, extract=FAST, library=installed_library(bundle))
    library = pipeline.library
    hits = [Hit(row, asset_id, 1.0 - row / 10) for row, asset_id in enumerate(library.ids)]
    counts = [len(library.part_rows(row)) for row in range(len(library))]
    for wanted in set(counts):
        whole = counts.index(wanted)  # the best-ranked asset with that many parts
        start, labels = pipeline.start_latents(hits, wanted)
        assert labels == library.assets[whole]["labels"]
        assert torch.equal(start.cpu(), torch.from_numpy(library.latents(whole)))
    # no asset has that many: rank order, the next assets' parts fill in
    start, labels = pipeline.start_latents(hits, max(counts) + 1)
    assert len(labels) == max(counts) + 1
    assert labels[:counts[0]] == library.assets[0]["labels"]


def test_a_bank_from_elsewhere_is_refused_with_the_fix(installed, world):
    with pytest.raises(ValueError, match="python -m engine library bank"):
        PartRAGPipeline.from_pretrained(world["bundle"], extract=FAST, library=installed / "library")
    plain = PartRAGPipeline.from_pretrained(world["bundle"], extract=FAST)
    with pytest.raises(ValueError, match="needs top-k > 0 and the part library"):
        plain(reference_image(world), 2, steps=1, top_k=1, strength=0.5)


def test_eval_generation_prints_every_row_and_draws_the_picture(installed, world, tmp_path,
                                                                  capsys):
    out = tmp_path / "eval"
    assert main(["eval", "generation", "--split", "test", "--data", str(world["data"]),
                 "--model", str(installed / "partrag"), "--limit", "1", "--top-k", "0", "1",
                 "--strength", "0.5", "--steps", "1", "--samples", "2000", "--picture", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in ("| dataset |", "| no retrieval (k = 0) |", "| PartRAG top-1 |",
                "| PartRAG top-3, retrieval-initialised σ0 = 0.5 |",
                "| retrieval only (nearest asset) |"):
        assert row in printed, row
    table = json.loads((out / "results.json").read_text())["table"]
    assert all(0 <= r["fscore"] <= 1 and r["chamfer"] >= 0 for r in table[1:])
    assert Image.open(out / "generation.png").size[0] > 0


def test_image_framing_crops_and_pads_to_a_square():
    rgba = np.zeros((40, 80, 4), np.uint8)
    rgba[10:20, 30:60] = 255
    framed, _ = frame_object(rgba)
    assert framed.shape == (36, 36, 4)
    assert (framed[..., 3] > 0).sum() == 300
    rgb = np.full((30, 30, 3), 250, np.uint8)
    rgb[10:20, 10:20] = (20, 40, 60)
    alpha = to_rgba(rgb)[..., 3]
    assert (alpha > 0).sum() == 100 and alpha[15, 15] == 255


# ------------------------------------------------------------------ CLI and server


def test_generate_cli_writes_every_file(world, tmp_path):
    image = tmp_path / "input.png"
    Image.fromarray(reference_image(world)).save(image)
    out = tmp_path / "out"
    assert main(["generate", str(image), "--parts", "2", "--model", str(world["bundle"]),
                 "--steps", "1", "--top-k", "1", "--max-faces", "500", "--out", str(out)]) == 0
    names = {"part_00.glb", "part_01.glb", "object.glb", "parts.json", "retrieved.json",
             "preview.png"}
    assert names <= {p.name for p in out.iterdir()}
    parts = json.loads((out / "parts.json").read_text())
    assert len(parts["parts"]) == 2 and {"encode", "retrieve", "denoise", "decode"} <= set(parts["timings"])
    assert all(p["faces"] <= 500 and {"pieces", "debris_removed"} <= p.keys() for p in parts["parts"])
    assert len(json.loads((out / "retrieved.json").read_text())) == 1


def test_server_generate_end_to_end(world, tmp_path):
    from bridge import EngineClient
    from bridge_harness import EngineProcess

    engine = EngineProcess(tmp_path, "--models", str(world["bundle"].parent))
    try:
        with EngineClient(engine.address) as client:
            assert any(m["name"] == "partrag" for m in client.hello()["models"])
            result = client.generate(reference_image(world), parts=2, seed=1, steps=1, top_k=1)
            assert len(result.parts) == 2
            assert len(result.metadata["retrieved"]) == 1
            assert {p.index for p in result.parts} == {0, 1}
            assert all(p.latent is not None and p.latent.ndim == 2 for p in result.parts)
    finally:
        engine.stop()


def test_server_answers_bad_requests_with_their_own_codes(world, tmp_path):
    """Requests a pipeline refuses get a specific code and a message saying what to do, no
    exception class names and no traceback in the log; the engine goes on serving."""
    from bridge import EngineClient
    from bridge.errors import EngineError
    from bridge.protocol import Part
    from bridge_harness import EngineProcess
    from engine.retrieval.exemplars import ExemplarBank

    engine = EngineProcess(tmp_path, "--models", str(world["bundle"].parent))
    max_parts = json.loads((world["bundle"] / "transformer" / "config.json").read_text())["max_num_parts"]
    blank = np.full((64, 64, 3), 200, np.uint8)  # nothing but background
    bank = len(ExemplarBank.load(world["bundle"] / "rag" / "bank.npz"))
    part = Part(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.int32), np.eye(4), "x", 0)
    try:
        with EngineClient(engine.address) as client:
            cases = [(lambda: client.generate(reference_image(world), parts=max_parts + 1, steps=1),
                      "invalid_part_count", f"1 to {max_parts} parts"),
                     (lambda: client.generate(blank, parts=2, steps=1), "no_foreground",
                      "no opaque (object) pixels"),
                     (lambda: client.edit([part], [0], operation="swap"), "invalid_parameter",
                      "swap needs the library part"),
                     (lambda: client.generate(reference_image(world), parts=2, steps=1,
                                              top_k=bank + 1), "invalid_parameter",
                      f"exceeds the bank's {bank} assets")]
            for request, code, text in cases:
                with pytest.raises(EngineError) as error:
                    request()
                assert error.value.code == code and text in error.value.message
                assert "Error" not in error.value.message
            assert len(client.generate(reference_image(world), parts=2, steps=1).parts) == 2
    finally:
        engine.stop()
    log = engine.log()
    assert "Traceback" not in log and "refused (invalid_part_count)" in log


def test_eval_diagnose_writes_every_section(installed, world, tmp_path):
    """Latent statistics (standardised: the bundle declares them), flow loss per σ bucket,
    denoise from truth with the plain reconstruction beside it, and the σ0 × guidance sweep."""
    out = tmp_path / "diagnose"
    assert main(["eval", "diagnose", "--data", str(world["data"]), "--model",
                 str(installed / "partrag"), "--vae", str(world["vae"]), "--cache",
                 str(world["cache"]), "--limit", "1", "--sweep-limit", "1", "--sigmas", "0.5",
                 "--sweep-strengths", "0.5", "--sweep-guidance", "1", "--samples", "2000",
                 "--out", str(out)]) == 0
    report = json.loads((out / "diagnosis.json").read_text())
    assert report["latents"]["standardised"]
    assert len(report["flow_loss_by_sigma"]) == 10
    assert all(np.isfinite(r["flow_loss"]) for r in report["flow_loss_by_sigma"])
    rows = [r["row"] for r in report["denoise_from_truth"]["table"]]
    assert rows == ["VAE reconstruction", "from truth, σ0 = 0.5"]
    assert [r["guidance"] for r in report["sweep"]] == [1.0, 1.0]
    assert "Denoise from truth" in (out / "diagnosis.md").read_text()


def test_bundle_contract_saves_loads_and_dispatches_on_the_class_name(world, tmp_path):
    from engine.pipelines.registry import class_for, installed_bundles, load_pipeline

    pipeline = load_pipeline(world["bundle"], extract=FAST, library=None)
    assert type(pipeline) is PartRAGPipeline
    first, second = tmp_path / "models" / "first", tmp_path / "models" / "second"
    pipeline.save_pretrained(first)
    reloaded = load_pipeline(first, extract=FAST, library=None)
    reloaded.save_pretrained(second)  # float16 weights: lossless from the second save on
    again = load_pipeline(second, extract=FAST, library=None)
    image = reference_image(world)
    a, b = reloaded(image, 2, steps=1, seed=3), again(image, 2, steps=1, seed=3)
    assert all(np.array_equal(x.vertices, y.vertices) for x, y in zip(a.parts, b.parts))
    expected = {**pipeline.resolve(2, 1, None, None, None), "automatic_parts": False, "seed": 3}
    assert a.params == {**expected, "model": str(first)}
    assert b.params == {**expected, "model": str(second)}
    assert installed_bundles(tmp_path / "models") == [first, second]
    index = json.loads((second / "model_index.json").read_text())
    (second / "model_index.json").write_text(json.dumps({**index, "_class_name": "Nope"}))
    with pytest.raises(ValueError, match="no pipeline of this engine loads _class_name 'Nope'"):
        class_for(second)

