import json
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from engine.cli import main
from engine.models.vecset_vae import VecSetVAE, VecSetVAEConfig
from engine.training.ema import EMA
from engine.training.loop import TrainConfig, learning_rate, train
from engine.data.vae_data import VAEExamples
from engine.models.geomseg_vae import GeomSegVAE
from engine.training.vae import RECIPES, make_task, part_vae_losses
from test_vae_data import write_tiny_dataset

TINY = RECIPES["tiny"]
CONFIG = TrainConfig(steps=8, batch_size=2, lr=1e-3, warmup_steps=2, log_every=2, val_every=4,
                     val_batches=1, checkpoint_every=100, seed=3)


def tiny_vae() -> VecSetVAE:
    torch.manual_seed(0)
    return VecSetVAE(VecSetVAEConfig(**TINY.model))


def sphere_batch(rng: np.random.Generator) -> dict:
    """Points on spheres of random radius, occupancy of random queries."""
    radius = rng.uniform(0.3, 0.9, (2, 1, 1))
    normals = rng.normal(size=(2, 64, 3))
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    queries = rng.uniform(-1, 1, (2, 96, 3))
    occupancy = np.linalg.norm(queries, axis=-1) < radius[..., 0]
    return {"points": torch.tensor(np.concatenate([radius * normals, normals], -1), dtype=torch.float32),
            "queries": torch.tensor(queries, dtype=torch.float32),
            "occupancy": torch.tensor(occupancy, dtype=torch.float32)}


def losses(model, batch):
    return part_vae_losses(model, batch, num_tokens=8, kl_weight=1e-3)


def run(tmp_path, config=CONFIG, resume=False, batch_fn=sphere_batch):
    return train(tiny_vae(), losses, batch_fn, sphere_batch, config, tmp_path, device="cpu",
                 resume=resume, progress=False)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight = run(tmp_path / "straight")

    def interrupted(rng, calls=[0]):
        calls[0] += 1
        if calls[0] == 4:  # SIGINT during step 4: the loop stops after finishing it
            os.kill(os.getpid(), signal.SIGINT)
        return sphere_batch(rng)

    first = run(tmp_path / "resumed", batch_fn=interrupted)
    assert (first.step, first.finished) == (4, False)
    resumed = run(tmp_path / "resumed", resume=True)
    assert (resumed.step, resumed.finished) == (8, True)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    reference = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, state["model"][name])
    assert straight.log["val"] == resumed.log["val"]


def test_resume_mid_log_window_averages_only_the_steps_it_ran(tmp_path):
    straight = run(tmp_path / "straight")

    def interrupted(rng, calls=[0]):
        calls[0] += 1
        if calls[0] == 3:  # stops after step 3, inside the step-4 log window
            os.kill(os.getpid(), signal.SIGINT)
        return sphere_batch(rng)

    run(tmp_path / "resumed", batch_fn=interrupted)
    resumed = run(tmp_path / "resumed", resume=True)
    after = next(e for e in resumed.log["train"] if e["step"] == 4)
    reference = next(e for e in straight.log["train"] if e["step"] == 4)
    # One step's loss, not one step's loss divided by the window length.
    assert after["loss"] == pytest.approx(reference["loss"], rel=0.3)


def test_run_folder_is_not_overwritten_and_config_is_checked(tmp_path):
    run(tmp_path, TrainConfig(**{**CONFIG.__dict__, "steps": 2}))
    with pytest.raises(FileExistsError):
        run(tmp_path)
    with pytest.raises(ValueError, match="another config"):
        run(tmp_path, TrainConfig(**{**CONFIG.__dict__, "steps": 2, "lr": 5e-4}), resume=True)
    # Only the length may change on resume: the run continues to the new total.
    assert run(tmp_path, resume=True).step == CONFIG.steps


def test_log_and_loss_curves_are_written(tmp_path):
    result = run(tmp_path)
    log = json.loads((tmp_path / "log.json").read_text())
    assert [r["step"] for r in log["train"]] == [2, 4, 6, 8]
    assert [r["step"] for r in log["val"]] == [4, 8]
    assert {"loss", "recon", "kl", "lr", "grad_norm"} <= set(log["train"][0])
    assert log == result.log
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert log["train"][-1]["recon"] < log["train"][0]["recon"]


def test_ema_math():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # first update: d = min(0.9, 1/10) = 0.1
    torch.testing.assert_close(ema.shadow.weight, 0.1 * start + 0.9 * (start + 1))
    ema.updates = 1000
    before = ema.shadow.weight.detach().clone()
    ema.update(model)  # later: d = 0.9
    torch.testing.assert_close(ema.shadow.weight, 0.9 * before + 0.1 * (start + 1))


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_fraction=0.1)
    rates = [learning_rate(config, s) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert learning_rate(config, 100) == pytest.approx(0.1)


def test_cli_trains_exports_and_fine_tunes_geomseg(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data")
    part = tmp_path / "models" / "part_vae"
    common = ["--data", str(data), "--config", "tiny", "--steps", "4", "--workers", "1",
              "--device", "cpu"]
    assert main(["train", "vae", "--kind", "part", "--out", str(tmp_path / "run"),
                 "--export", str(part), *common]) == 0
    assert "exported to" in capsys.readouterr().out
    card = (part / "MODEL_CARD.md").read_text()
    assert "Retrain" in card and "4 steps" in card and "wall time on CPU" in card
    assert (part / "diffusion_pytorch_model.safetensors").stat().st_size < 40 * 2**20

    # Round trip: the bundle computes what the EMA weights compute, rounded to its dtype.
    loaded = VecSetVAE.from_pretrained(part)
    ema = VecSetVAE(VecSetVAEConfig(**TINY.model))
    ema.load_state_dict(torch.load(tmp_path / "run" / "checkpoint.pt",
                                   weights_only=False)["ema"]["shadow"])
    if saved_dtype(part) == torch.float16:
        ema.half().float()
    points, queries = torch.rand(1, 64, 6), torch.rand(1, 50, 3)
    latents = torch.randn(1, 8, TINY.model["latent_channels"])
    with torch.no_grad():
        assert torch.equal(loaded.decode(latents, queries), ema.decode(latents, queries))
        assert torch.equal(loaded.encode(points, query_index=torch.arange(8)).mean,
                           ema.encode(points, query_index=torch.arange(8)).mean)
    assert loaded.extra_config["encode_num_tokens"] == TINY.num_tokens

    assert main(["train", "vae", "--kind", "geomseg", "--out", str(tmp_path / "seg_run"),
                 "--init", str(part), "--export", str(tmp_path / "models" / "geomseg"),
                 *common]) == 0
    assert (tmp_path / "models" / "geomseg" / "seg" / "config.json").is_file()
    log = json.loads((tmp_path / "seg_run" / "log.json").read_text())
    assert {"seg", "pos", "recon"} <= set(log["val"][-1])
    assert "--geomseg" in (tmp_path / "models" / "geomseg" / "MODEL_CARD.md").read_text()

    # A Geom-Seg folder as --init continues all of it, segmentation heads included.
    first = GeomSegVAE.from_pretrained(tmp_path / "models" / "geomseg")
    examples = VAEExamples(sorted((data / "vae_cache" / "train").glob("*.npz")))
    continued = make_task("geomseg", RECIPES["tiny"], examples, examples, 2,
                          tmp_path / "models" / "geomseg").model
    for (name, a), b in zip(first.state_dict().items(), continued.state_dict().values()):
        assert torch.equal(a.float(), b), name


def saved_dtype(folder) -> torch.dtype:
    from safetensors import safe_open

    with safe_open(folder / "diffusion_pytorch_model.safetensors", "pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


def test_recipes_load_by_name_or_json_file(tmp_path):
    from engine.training.recipes import load_recipe
    from engine.training.vae import VAERecipe

    named = load_recipe("tiny", RECIPES)
    assert named == RECIPES["tiny"] and named is not RECIPES["tiny"]
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"model": {"latent_channels": 4}, "num_tokens": 8,
                                "kl_weight": 0.5}))
    loaded = load_recipe(str(path), RECIPES)
    assert isinstance(loaded, VAERecipe) and (loaded.num_tokens, loaded.kl_weight) == (8, 0.5)
    path.write_text(json.dumps({"num_tokenz": 8}))
    with pytest.raises(ValueError, match="unknown recipe keys.*num_tokenz"):
        load_recipe(str(path), RECIPES)
    with pytest.raises(FileNotFoundError, match="neither"):
        load_recipe("huge", RECIPES)


def test_decoder_only_fine_tune_keeps_the_latent_space(tmp_path):
    """A 'robust' fine-tune trains the decoder on noisy latents and leaves the encoder (the
    latent space every cache, library and generator was made on) bit-for-bit unchanged."""
    from dataclasses import replace

    vae = tiny_vae()
    vae.save_pretrained(tmp_path / "start")
    recipe = replace(TINY, decoder_only=True, latent_noise=0.5, num_tokens=8)
    task = make_task("part", recipe, None, None, 2, tmp_path / "start")
    result = train(task.model, task.losses, sphere_batch, sphere_batch, CONFIG, tmp_path / "run",
                   device="cpu", progress=False)
    before, after = VecSetVAE.from_pretrained(tmp_path / "start").state_dict(), result.ema.state_dict()
    for name in before:
        changed = not torch.equal(before[name].float(), after[name].float())
        assert changed == name.startswith(("post_quant", "decoder")), name
    # The noise reaches the decoder: the same batch gives different losses.
    batch = sphere_batch(np.random.default_rng(0))
    torch.manual_seed(0)
    first = part_vae_losses(vae, batch, 8, 1e-3, latent_noise=2.0)["recon"]
    torch.manual_seed(1)
    assert part_vae_losses(vae, batch, 8, 1e-3, latent_noise=2.0)["recon"] != first
