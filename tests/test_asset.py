import numpy as np
import pytest

from engine.data import primitives as P
from engine.data.asset import AssetBuilder


def four_legged(offset=0.0):
    b = AssetBuilder("table", [(0.5, 0.3, 0.2)])
    b.add("top", P.box((2.0, 0.1, 1.0)).translated((offset, 1.0, 0)))
    leg = P.box((0.1, 1.0, 0.1))
    for x in (-0.9, 0.9):
        for z in (-0.4, 0.4):
            b.add("leg", leg.translated((x + offset, 0.45, z)))
    return b.finish(seed=7)


def test_normalised_to_canonical_frame():
    asset = four_legged(offset=5.0)
    v = np.concatenate([p.object_vertices() for p in asset.parts])
    lo, hi = v.min(0), v.max(0)
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
    assert (hi - lo).max() == pytest.approx(2.0)


def test_parts_are_local_with_translation_transforms():
    asset = four_legged()
    for part in asset.parts:
        lo, hi = part.vertices.min(0), part.vertices.max(0)
        np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
        np.testing.assert_array_equal(part.transform[:3, :3], np.eye(3))
        assert part.vertices.dtype == np.float32 and part.faces.dtype == np.int32


def test_identical_parts_share_mesh_id_and_arrays():
    asset = four_legged()
    assert asset.labels == ["table_top"] + ["table_leg"] * 4
    ids = [p.mesh_id for p in asset.parts]
    assert ids == ["mesh0"] + ["mesh1"] * 4
    legs = asset.parts[1:]
    assert all(leg.vertices is legs[0].vertices for leg in legs)
    assert len({tuple(leg.transform[:3, 3].round(6)) for leg in legs}) == 4


def test_material_index_checked():
    b = AssetBuilder("mug", [(1, 1, 1)])
    with pytest.raises(ValueError, match="material 3"):
        b.add("body", P.box((1, 1, 1)), material=3)
