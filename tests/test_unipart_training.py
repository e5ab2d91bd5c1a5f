"""UniPart's training side: the latent cache (Z with its per-latent parts, parts in the
global and the normalised canonical space) and both DiT stages trained and exported through
`python -m engine train unipart` on a tiny dataset."""

import json

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.data.dataset import load_asset
from engine.models.dual_lane_dit import DualLaneDiT
from engine.models.geomseg_vae import GeomSegVAE
from engine.models.vecset_vae import VecSetVAE
from engine.models.unipart_context import SCALES_NAME, Scales
from engine.training.unipart import UniPartExamples, fit_scales
from engine.training.unipart_data import build_unipart_cache, load_unipart, ncs_frame
from partrag_world import SPLITS, fake_views, tiny_vae_folder
from tiny_dataset import write_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("unipart")
    data = write_dataset(root / "data", SPLITS, draw_views=lambda asset, seed: fake_views(asset))
    vae = tiny_vae_folder(root / "vae")
    torch.manual_seed(1)
    GeomSegVAE.from_vecset(VecSetVAE.from_pretrained(vae), num_tokens=8).save_pretrained(
        root / "geomseg")
    return {"root": root, "data": data, "vae": vae, "geomseg": root / "geomseg"}


def test_ncs_frame_maps_a_part_to_its_own_canonical_box():
    rng = np.random.default_rng(0)
    leg = rng.uniform([-0.02, 0.0, -0.02], [0.02, 0.8, 0.02], (50, 3)) + [0.5, -0.3, 0.1]
    centre, half = ncs_frame(leg)
    normalised = (leg - centre) / half
    assert np.isclose((normalised.max(0) - normalised.min(0)).max(), 2.0)
    np.testing.assert_allclose((normalised.max(0) + normalised.min(0)) / 2, 0.0, atol=1e-12)
    np.testing.assert_allclose(normalised * half + centre, leg)


def test_cache_holds_the_whole_latent_its_parts_and_both_spaces(world):
    paths = build_unipart_cache(world["data"], world["root"] / "cache", "train",
                                world["geomseg"], world["vae"], progress=False)
    assert len(paths) == len(SPLITS["train"])
    vae = VecSetVAE.from_pretrained(world["vae"])
    tokens, channels = vae.encode_tokens, vae.config.latent_channels
    for path in paths:
        asset = load_asset(world["data"] / "train" / path.stem)
        with np.load(path) as a:
            n = len(asset.parts)
            assert a["gcs"].shape == a["ncs"].shape == (n, tokens, channels)
            assert a["z"].shape[-1] == channels and a["z_parts"].shape == a["z"].shape[:1]
            assert set(np.unique(a["z_parts"])) <= set(range(n))
            for part, box in zip(asset.parts, a["boxes"]):
                centre, half = ncs_frame(part.object_vertices())
                np.testing.assert_allclose(box, [*centre, half], rtol=1e-5, atol=1e-6)
            # the two spaces differ wherever a part is not already its own canonical box
            assert not np.array_equal(a["gcs"], a["ncs"])
    again = build_unipart_cache(world["data"], world["root"] / "cache", "train",
                                world["geomseg"], world["vae"], progress=False)
    assert again == paths


def test_part_batches_pair_both_spaces_of_one_part_with_its_segment(world):
    from engine.training.dit_data import build_latent_cache

    dit = build_latent_cache(world["data"], world["root"] / "dit", "train", world["vae"],
                             "efficientnet-lite0", progress=False)
    unipart = build_unipart_cache(world["data"], world["root"] / "cache", "train",
                                  world["geomseg"], world["vae"], progress=False)
    objects = load_unipart(unipart, dit)
    scales = fit_scales(objects)
    batch = UniPartExamples(objects, scales).part_batch(np.random.default_rng(0), 3)
    assert batch["latents"].shape[0] == 6 and batch["counts"].tolist() == [2, 2, 2]
    assert batch["segment"].shape[:2] == (3, objects[0].z.shape[0])
    gcs = scales.gcs.denormalise(batch["latents"][0::2]).numpy()
    ncs = scales.ncs.denormalise(batch["latents"][1::2]).numpy()
    for j in range(3):  # each pair: one part's two spaces, and that part's latents flagged
        (i, k), = [(i, k) for i, o in enumerate(objects) for k in range(o.num_parts)
                   if np.allclose(o.gcs[k].astype(np.float32), gcs[j], atol=1e-5)]
        np.testing.assert_allclose(objects[i].ncs[k].astype(np.float32), ncs[j], atol=1e-5)
        np.testing.assert_array_equal(batch["segment"][j, :, -1].numpy(),
                                      objects[i].z_parts == k)
    whole = UniPartExamples(objects, scales).whole_batch(np.random.default_rng(0), 4)
    assert whole["latents"].shape == (4, *objects[0].z.shape)
    assert whole["counts"].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="not the same object"):
        load_unipart(unipart[:2], dit[1:3])


def test_train_whole_stage_exports_its_dit_and_the_part_stage_needs_it(world, tmp_path,
                                                                        capsys):
    common = ["--data", str(world["data"]), "--out", str(tmp_path / "run"), "--config", "tiny",
              "--geomseg", str(world["geomseg"]), "--vae", str(world["vae"]), "--cache",
              str(world["root"] / "cache"), "--dit-cache", str(world["root"] / "dit"),
              "--device", "cpu"]
    export = tmp_path / "whole"
    assert main(["train", "unipart", "--stage", "whole", "--export", str(export), *common]) == 0
    assert "UniPart whole DiT: 4 steps" in capsys.readouterr().out
    assert DualLaneDiT.from_pretrained(export / "transformer").config.max_num_parts == 1
    assert set(json.loads((export / SCALES_NAME).read_text())) == {"z", "gcs", "ncs"}
    assert not Scales.load(export / SCALES_NAME).ncs.identity
    record = json.loads((export / "training.json").read_text())
    assert record["steps"] == 4 and record["objects"] == len(SPLITS["train"])
    assert main(["train", "unipart", "--stage", "part", "--export", str(tmp_path / "b"),
                 *common]) == 2
    assert "--whole" in capsys.readouterr().err


@pytest.mark.parametrize("config, apart", [("no-global", True), ("small", False)])
def test_no_global_recipe_keeps_the_two_spaces_apart(config, apart):
    """The Eq. 5 ablation: without global blocks the GCS lane's velocity does not depend on
    the NCS lane's latents (the default recipe's does)."""
    from dataclasses import replace

    from engine.models.rag_context import per_part_rows
    from engine.training.unipart import load_recipe, make_model

    recipe = load_recipe(config, "part")
    recipe = replace(recipe, model={**recipe.model, "width": 16, "num_attention_heads": 2})
    torch.manual_seed(0)
    transformer = make_model("part", recipe, 8, 12).transformer.eval()
    x, counts = torch.randn(2, 4, 8), torch.tensor([2])
    context = per_part_rows(torch.randn(1, 3, 12), counts)
    moved = x.clone()
    moved[1] += 1.0  # only the NCS lane's latents change
    with torch.no_grad():
        before, after = (transformer(lane, 500.0, context, counts)
                         for lane in (x, moved))
    assert not torch.allclose(before[1], after[1])
    assert torch.allclose(before[0], after[0], atol=1e-6) == apart


@pytest.fixture(scope="module")
def bundle(world, tmp_path_factory):
    """A tiny UniPart bundle: both stages trained 4 steps, the part stage exporting it."""
    root = tmp_path_factory.mktemp("unipart_bundle")
    common = ["--data", str(world["data"]), "--config", "tiny", "--geomseg",
              str(world["geomseg"]), "--vae", str(world["vae"]), "--cache",
              str(world["root"] / "cache"), "--dit-cache", str(world["root"] / "dit"),
              "--device", "cpu"]
    assert main(["train", "unipart", "--stage", "whole", "--out", str(root / "whole_run"),
                 "--export", str(root / "whole"), *common]) == 0
    assert main(["train", "unipart", "--stage", "part", "--out", str(root / "part_run"),
                 "--whole", str(root / "whole"), "--export", str(root / "models" / "unipart"),
                 *common]) == 0
    return root / "models" / "unipart"


def test_unipart_pipeline_makes_the_asked_or_found_number_of_parts(world, bundle):
    from engine.pipelines.decode import ExtractSettings
    from engine.pipelines.registry import load_pipeline
    from engine.pipelines.unipart import UniPartPipeline
    from partrag_world import reference_image

    pipeline = load_pipeline(bundle, extract=ExtractSettings(resolution=32, coarse_resolution=8))
    assert type(pipeline) is UniPartPipeline
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "Whole-level DiT (whole/): 4 steps" in card and "Dual-space part DiT (part/): 4 steps" in card
    assert "- Retrain: `python -m engine " in card
    image = reference_image(world)
    stages = []
    three = pipeline(image, 3, steps=2, seed=1, progress=lambda s, f: stages.append((s, f)))
    assert [p.index for p in three.parts] == [0, 1, 2]
    assert three.params["parts"] == 3 and not three.params["automatic_parts"]
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and stages[-1][1] == 1.0
    assert [s for s, _ in stages][0] == "encode"
    for part in three.parts:
        assert part.vertices.dtype == np.float32 and len(part.faces)
        assert np.allclose((part.vertices.min(0) + part.vertices.max(0)) / 2, 0, atol=1e-5)
    again = pipeline(image, 3, steps=2, seed=1)
    assert all(np.array_equal(a.vertices, b.vertices) for a, b in zip(three.parts, again.parts))
    found = pipeline(image, None, steps=2, seed=1)
    assert found.params["automatic_parts"]
    assert len(found.parts) == found.params["parts"] == found.params["segments_found"]
    with pytest.raises(ValueError, match="top-k"):
        pipeline(image, 2, top_k=3)


def test_segment_count_merges_and_splits_to_the_asked_number():
    from engine.pipelines.unipart import segment_count

    anchors = torch.tensor([[x, 0.0, 0.0] for x in range(8)], dtype=torch.float32)
    found = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert segment_count(found, anchors, None).tolist() == found.tolist()
    merged = segment_count(found, anchors, 2)
    assert merged.max() == 1 and merged[:4].tolist() == [0, 0, 1, 1]
    assert merged[4:].tolist() == [1, 1, 1, 1]  # parts 2 and 3 join the nearer kept part
    split = segment_count(torch.zeros(8, dtype=torch.long), anchors, 3)
    assert sorted(torch.bincount(split).tolist()) == [2, 2, 4]
    assert segment_count(torch.zeros(2, dtype=torch.long), anchors[:2], 5).max() == 1


def test_eval_unipart_prints_the_table_count_accuracy_and_draws_the_picture(world, bundle,
                                                                            tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "unipart", "--data", str(world["data"]), "--model", str(bundle),
                 "--partrag", str(tmp_path / "none"), "--limit", "1", "--steps", "1",
                 "--samples", "2000", "--picture", "1", "--out", str(out),
                 "--ablation", f"same bundle again={bundle}", "--geomseg",
                 str(world["geomseg"]),
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    for row in ("UniPart (dual-space)", "UniPart, GCS only",
                "UniPart, NCS placed by ground-truth boxes",
                "UniPart, NCS placed by its segment's anchors", "same bundle again",
                "UniPart's Ẑ alone (one piece, Geom-Seg decoder)",
                "UniPart, automatic part count"):
        assert f"| {row} |" in text
    assert "Automatic part count over 1 objects" in text
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["count"]["within_one"] <= 1.0
    assert all(r["chamfer"] >= 0 and 0 <= r["f05"] <= r["f10"] <= 1 for r in results["table"])
    assert (out / "unipart.png").is_file()
    by_row = {r["row"]: r for r in results["table"]}
    assert by_row["same bundle again"]["chamfer"] == by_row["UniPart (dual-space)"]["chamfer"]
    assert main(["eval", "unipart", "--model", str(bundle), "--ablation", str(bundle)]) == 2
    assert "NAME=BUNDLE" in capsys.readouterr().err


def test_generate_cli_runs_a_unipart_bundle(world, bundle, tmp_path, capsys):
    from PIL import Image

    from partrag_world import reference_image

    image = tmp_path / "input.png"
    Image.fromarray(reference_image(world)).save(image)
    out = tmp_path / "out"
    assert main(["generate", str(image), "--model", str(bundle), "--parts", "2", "--steps", "1",
                 "--max-faces", "500", "--out", str(out)]) == 0
    parts = json.loads((out / "parts.json").read_text())
    assert len(parts["parts"]) == 2 and parts["params"]["model"] == str(bundle)
    assert {"part_00.glb", "part_01.glb", "object.glb", "preview.png", "segmentation.png"} <= {
        p.name for p in out.iterdir()}
    picture = np.asarray(Image.open(out / "segmentation.png").convert("RGB"))
    assert picture.shape == (256, 512, 3)
    from engine.render.colours import preview_colours  # both parts' anchors are drawn
    for colour in preview_colours(2):
        assert (picture == colour).all(-1).any()
    assert main(["generate", str(image), "--pipeline", "unipart", "--out", str(out),
                 "--model", str(tmp_path / "missing")]) == 2
    assert "no model at" in capsys.readouterr().err


def test_segment_variants_break_exactly_the_segment_information():
    from engine.eval.unipart_conditioning import VARIANTS, segment_variants

    segment = torch.cat([torch.randn(2, 5, 3), torch.tensor([[1, 1, 0, 0, 0],
                                                               [0, 0, 0, 1, 1.0]])[..., None]], -1)
    variants = segment_variants(segment)
    assert list(variants) == list(VARIANTS)
    assert torch.equal(variants["another object's segment"][0, :, -1], segment[1, :, -1])
    assert torch.equal(variants["every latent but the part's"][..., -1], 1 - segment[..., -1])
    for name in ("another object's segment", "every latent but the part's"):
        assert torch.equal(variants[name][..., :-1], segment[..., :-1])  # Ẑ itself untouched
    assert not variants["no segment"].any()


def test_conditioning_check_prints_each_lane_per_sigma(world, bundle, capsys):
    assert main(["eval", "unipart-conditioning", "--model", str(bundle), "--data",
                 str(world["data"]), "--geomseg", str(world["geomseg"]), "--vae",
                 str(world["vae"]), "--cache", str(world["root"] / "cache"), "--dit-cache",
                 str(world["root"] / "dit"), "--parts", "4", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ")][2:]
    assert [row.split(" | ")[0][2:] for row in rows] == [
        "as trained", "another object's segment", "every latent but the part's", "no segment",
        "no image"]
    cells = [cell for row in rows for cell in row.strip(" |").split(" | ")[1:]]
    assert len(cells) == 5 * 10 and all(float(c.split(" / ")[0]) >= 0 for c in cells)
    assert rows[0] != rows[4]  # the image reaches the network


def test_anchor_boxes_place_each_part_on_its_segment():
    from engine.eval.unipart_eval import anchor_boxes, placed_on
    from engine.pipelines.decode import PartMesh

    anchors = np.array([[0, 0, 0], [2, 1, 0], [5, 5, 5], [5, 5, 6.0]])
    boxes = anchor_boxes(anchors, np.array([0, 0, 1, 1]), 2)
    np.testing.assert_allclose(boxes, [[1, 0.5, 0, 1], [5, 5, 5.5, 0.5]])
    single = anchor_boxes(anchors, np.array([0, 0, 0, 1]), 2)[1]
    assert single[3] > 0  # one anchor still makes a part of some size
    cube = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32)
    mesh = placed_on(PartMesh(cube * 3, np.zeros((0, 3), np.int32), np.eye(4), 0, False, 1, 0.0,
                              0.0), boxes[1])
    np.testing.assert_allclose(mesh.vertices.max(0), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(mesh.transform[:3, 3], [5, 5, 5.5])
