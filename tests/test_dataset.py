import json
import os

import numpy as np
import pytest
from PIL import Image

from engine.data import primitives as P
from engine.data.asset import AssetBuilder
from engine.data.categories import generate_asset
from engine.data.dataset import BuildOptions, build_dataset, check_asset, load_asset

OPTIONS = BuildOptions(views=2, image_size=96, samples=4096)
COUNTS = {"train": 4, "val": 1, "test": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    manifest = build_dataset(root, COUNTS, seed=5, options=OPTIONS, workers=1, progress=False)
    return root, manifest


def test_manifest_lists_every_split(dataset):
    root, manifest = dataset
    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk["splits"] == manifest["splits"]
    assert {s: len(v) for s, v in manifest["splits"].items()} == COUNTS
    assert manifest["objects_per_second"] > 0


def test_splits_never_share_objects(dataset):
    _, manifest = dataset
    names = {s: {r["name"] for r in records} for s, records in manifest["splits"].items()}
    assert not names["train"] & names["test"] and not names["train"] & names["val"]
    assert not names["val"] & names["test"]


def test_objects_pass_the_filters(dataset):
    _, manifest = dataset
    for records in manifest["splits"].values():
        for r in records:
            assert 2 <= r["parts"] <= 8 and r["part_iou"] < 0.5


def test_object_folder_contents(dataset):
    root, manifest = dataset
    record = manifest["splits"]["test"][0]
    folder = root / "test" / record["name"]
    meta = json.loads((folder / "meta.json").read_text())
    assert len(meta["labels"]) == record["parts"] == len(meta["transforms"]) == len(meta["mesh_ids"])
    assert len(meta["views"]) == OPTIONS.views
    for view in meta["views"]:
        rgba = np.asarray(Image.open(folder / view["image"]))
        mask = np.asarray(Image.open(folder / view["mask"]))
        assert rgba.shape == (96, 96, 4) and mask.shape == (96, 96)
        present = set(np.unique(mask)) - {255}
        assert present and max(present) < record["parts"]
        assert np.asarray(view["K"]).shape == (3, 3) and np.asarray(view["extrinsic"]).shape == (4, 4)
    samples = np.load(folder / "samples.npz")
    assert samples["points"].shape == (OPTIONS.samples, 3)
    np.testing.assert_allclose(np.linalg.norm(samples["normals"], axis=1), 1, atol=1e-3)
    assert set(np.unique(samples["part"])) <= set(range(record["parts"]))
    assert np.abs(samples["points"]).max() <= 1.0 + 1e-5


def test_saved_asset_round_trips(dataset):
    root, manifest = dataset
    record = manifest["splits"]["train"][1]
    loaded = load_asset(root / "train" / record["name"])
    original = generate_asset(record["category"], record["seed"])
    assert loaded.labels == original.labels
    for a, b in zip(loaded.parts, original.parts):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_array_equal(a.transform, b.transform)
        assert a.mesh_id == b.mesh_id


def test_rebuild_resumes_without_rewriting(dataset):
    root, manifest = dataset
    first = root / "train" / manifest["splits"]["train"][0]["name"]
    removed = root / "train" / manifest["splits"]["train"][1]["name"]
    stamp = os.stat(first / "meta.json").st_mtime_ns
    for f in removed.iterdir():
        f.unlink()
    removed.rmdir()
    again = build_dataset(root, COUNTS, seed=5, options=OPTIONS, workers=1, progress=False)
    assert again["splits"] == manifest["splits"]
    assert os.stat(first / "meta.json").st_mtime_ns == stamp
    assert (removed / "meta.json").exists()


def test_filters_reject_bad_part_counts_and_overlap():
    one = AssetBuilder("thing", [(1, 1, 1)])
    one.add("body", P.box((1, 1, 1)))
    assert check_asset(one.finish(0))[:2] == (False, "1 parts")
    nine = AssetBuilder("thing", [(1, 1, 1)])
    for k in range(9):
        nine.add("slab", P.box((0.1, 1, 1)).translated((k * 0.2, 0, 0)))
    assert not check_asset(nine.finish(0))[0]
    twins = AssetBuilder("thing", [(1, 1, 1)])
    twins.add("a", P.box((1, 1, 1)))
    twins.add("b", P.box((1, 1, 1)).translated((0.1, 0, 0)))
    kept, reason, iou = check_asset(twins.finish(0))
    assert not kept and iou > 0.5 and reason.startswith("mean part IoU")
