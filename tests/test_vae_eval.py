import json

import math
import numpy as np
import pytest
import torch

from engine.cli import main
from engine.data.dataset import load_asset
from engine.eval.vae_eval import ExtractOptions, as_asset, reconstruct_parts, summarise
from engine.models.geomseg_vae import GeomSegVAE, GeomSegConfig
from engine.models.vecset_vae import VecSetVAE, VecSetVAEConfig
from engine.models.vecset_vae import ENCODE_POINTS_KEY, ENCODE_TOKENS_KEY
from engine.training.vae import RECIPES
from test_vae_data import write_tiny_dataset

TINY = RECIPES["tiny"]
SMALL_GRID = ExtractOptions(resolution=32, coarse_resolution=16)


def centred_vae() -> VecSetVAE:
    """A random tiny VAE whose field crosses zero inside the cube (so surfaces exist)."""
    torch.manual_seed(0)
    vae = VecSetVAE(VecSetVAEConfig(**TINY.model))
    vae.extra_config.update({ENCODE_TOKENS_KEY: TINY.num_tokens, ENCODE_POINTS_KEY: TINY.points})
    with torch.no_grad():
        latents = vae.encode(torch.rand(1, TINY.points, 6), TINY.num_tokens).mean
        field = vae.decode(latents, torch.rand(1, 4096, 3) * 2 - 1)
        vae.decoder.proj_out.bias += field.median()  # the decoder negates its logits
    return vae.eval()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("vae_eval")
    data = write_tiny_dataset(root / "data")
    vae = centred_vae()
    vae.save_pretrained(root / "part_vae")
    GeomSegVAE.from_vecset(vae, GeomSegConfig(num_tokens=TINY.num_tokens, **TINY.geomseg)) \
        .save_pretrained(root / "geomseg")
    return root, data


def test_reconstruction_is_one_mesh_per_part_in_the_object_frame(bundles):
    root, data = bundles
    asset = load_asset(next((data / "test").iterdir()))
    meshes = reconstruct_parts(VecSetVAE.from_pretrained(root / "part_vae"), asset, SMALL_GRID)
    assert len(meshes) == len(asset.parts)
    recon = as_asset(asset, meshes)
    for part in recon.parts:
        k = part.index
        np.testing.assert_allclose(part.object_vertices(), meshes[k][0], atol=1e-6)
        assert part.label == asset.parts[k].label


def test_summary_counts_failed_objects():
    from engine.eval.vae_eval import ObjectResult

    rows = [ObjectResult("a", "chair", 2, 0.02, 0.99, 0, 1.0, 0.04, 0.0),
            ObjectResult("b", "chair", 3, math.nan, math.nan, 3, 1.0, math.nan, 0.02)]
    summary = summarise(rows)
    assert summary["failed"] == 1 and summary["chamfer"] == 0.02 and summary["empty_parts"] == 3
    assert summary["debris"] == 0.04 and summary["gt_debris"] == 0.01


def test_eval_cli_prints_the_figures(bundles, capsys):
    root, data = bundles
    out = root / "out"
    assert main(["eval", "vae", "--data", str(data), "--model", str(root / "part_vae"),
                 "--geomseg", str(root / "geomseg"), "--resolution", "32", "--coarse", "16",
                 "--samples", "2000", "--sheet", "0", "--device", "cpu", "--out", str(out),
                 "--timing-parts", "1", "--timing-resolutions", "32", "64"]) == 0
    printed = capsys.readouterr().out
    assert "CD" in printed and "F@0.1" in printed and "mIoU" in printed
    report = json.loads((out / "results.json").read_text())
    assert report["part_vae"]["objects"] == 2
    assert np.isfinite(report["part_vae"]["chamfer"])
    assert 0 <= report["geomseg"]["accuracy"] <= 1 and 0 <= report["geomseg"]["miou"] <= 1
    timings = report["extraction"]
    assert [row["resolution"] for row in timings] == [32, 64]
    assert all(row["hierarchical_queries"] <= row["dense_queries"] == (r + 1) ** 3
               for row, r in zip(timings, (32, 64)))
    assert "hierarchical" in printed
