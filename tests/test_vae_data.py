import numpy as np
import pytest

from engine.data.dataset import load_asset
from engine.data.vae_data import (BOX, NEAR, UNIFORM, CacheOptions, SampleOptions, VAEExamples,
                                  build_cache)
from engine.geometry.inside import points_inside
from tiny_dataset import write_dataset

TINY_CACHE = CacheOptions(surface_per_part=256, near_per_part=256, box_per_part=64, uniform=256)
TINY_SAMPLE = SampleOptions(points=64, queries=100)
SPLITS = {"train": ["chair", "mug", "bucket"], "val": ["table"], "test": ["chair", "stool"]}


def write_tiny_dataset(root):
    """A dataset folder without renders."""
    return write_dataset(root, SPLITS)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("vae_dataset"))


@pytest.fixture(scope="module")
def cached(dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("vae_cache")
    return cache, build_cache(dataset, cache, "train", TINY_CACHE, workers=1, progress=False)


def test_labels_are_exact_occupancy_of_each_part(dataset, cached):
    _, paths = cached
    arrays = np.load(paths[0])
    parts = load_asset(dataset / "train" / paths[0].stem).parts
    assert arrays["inside"].shape == (len(arrays["queries"]), len(parts))
    for k, part in enumerate(parts):
        expected = points_inside(part.object_vertices(), part.faces, arrays["queries"])
        np.testing.assert_array_equal(arrays["inside"][:, k], expected)
    # Near-surface queries straddle the surface: both labels occur around every part.
    for k in range(len(parts)):
        near = (arrays["query_kind"] == NEAR) & (arrays["query_part"] == k)
        assert 0 < arrays["inside"][near, k].mean() < 1
    assert np.abs(arrays["queries"][arrays["query_kind"] == UNIFORM]).max() <= 1.05


def test_cache_is_resumable_and_refuses_other_options(dataset, cached):
    cache, paths = cached
    stamps = [p.stat().st_mtime_ns for p in paths]
    paths[1].unlink()
    again = build_cache(dataset, cache, "train", TINY_CACHE, workers=1, progress=False)
    assert again == paths and all(p.is_file() for p in paths)
    assert [p.stat().st_mtime_ns for p in paths][::2] == stamps[::2]  # untouched
    assert not list(cache.rglob("*.tmp.npz"))
    with pytest.raises(ValueError, match="other options"):
        build_cache(dataset, cache, "train", CacheOptions(uniform=7), workers=1, progress=False)


def test_part_batches(cached):
    examples = VAEExamples(cached[1], TINY_SAMPLE)
    batch = examples.part_batch(np.random.default_rng(0), 3)
    assert batch["points"].shape == (3, 64, 6) and batch["queries"].shape == (3, 100, 3)
    assert batch["occupancy"].shape == (3, 100)
    assert set(batch["occupancy"].unique().tolist()) <= {0.0, 1.0}
    normals = batch["points"][..., 3:].norm(dim=-1)
    assert ((normals - 1).abs() < 1e-2).all()
    again = examples.part_batch(np.random.default_rng(0), 3)
    assert all((batch[k] == again[k]).all() for k in batch)


def test_part_example_labels_its_own_part(cached):
    examples = VAEExamples(cached[1], TINY_SAMPLE)
    rng = np.random.default_rng(1)
    for index, (i, k) in enumerate(examples.parts):
        obj = examples.objects[i]
        example = examples.part_example(rng, index)
        rows = [np.flatnonzero((obj.queries == q).all(1))[0] for q in example["queries"][:10]]
        np.testing.assert_array_equal(example["occupancy"][:10], obj.inside[rows, k])
        kinds = obj.query_kind[rows]
        assert set(obj.query_part[rows][kinds != UNIFORM]) <= {k}
        assert NEAR in kinds or BOX in kinds


def test_object_batches_carry_part_codes_and_union_occupancy(cached):
    examples = VAEExamples(cached[1], TINY_SAMPLE)
    batch = examples.object_batch(np.random.default_rng(2), 4)
    assert batch["points"].shape == (4, 64, 7) and batch["part_labels"].shape == (4, 64)
    for points, labels in zip(batch["points"], batch["part_labels"]):
        codes = {}
        for code, label in zip(points[:, 6].tolist(), labels.tolist()):
            assert codes.setdefault(label, code) == code  # one code per part
        n = len(codes)
        expected = np.linspace(-1, 1, n) if n > 1 else [0.0]
        np.testing.assert_allclose(sorted(codes.values()), expected, atol=1e-6)
    obj = examples.objects[0]
    example = examples.object_example(np.random.default_rng(3), 0)
    rows = [np.flatnonzero((obj.queries == q).all(1))[0] for q in example["queries"]]
    np.testing.assert_array_equal(example["occupancy"], obj.inside[rows].any(1))
