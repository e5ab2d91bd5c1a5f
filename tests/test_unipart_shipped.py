"""The shipped UniPart bundle (models/unipart) loads and runs from a fresh clone: the
automatic part count gives as many parts as the latent segmentation found, an asked count
is honoured, and the same seed gives the same arrays."""

import numpy as np
import pytest
from PIL import Image

from engine.demo import DEMO_IMAGE
from engine.pipelines.decode import ExtractSettings
from engine.pipelines.registry import DEFAULT_MODELS
from engine.pipelines.unipart import UniPartPipeline


@pytest.fixture(scope="module")
def unipart():
    # 64³ extraction: what is tested here is the pipeline, not the surface detail
    return UniPartPipeline.from_pretrained(DEFAULT_MODELS / "unipart", "cpu",
                                           extract=ExtractSettings(resolution=64))


@pytest.fixture(scope="module")
def chair():
    return np.asarray(Image.open(DEMO_IMAGE).convert("RGBA"))


def test_shipped_unipart_finds_its_own_part_count(unipart, chair):
    result = unipart(chair, None, steps=4, seed=0)
    assert result.params["automatic_parts"]
    assert len(result.parts) == result.params["segments_found"] == result.params["parts"] >= 2
    assert all(len(p.faces) > 0 for p in result.parts)
    assert {"whole", "segment", "parts", "decode"} <= set(result.timings)


def test_shipped_unipart_honours_an_asked_count_and_its_seed(unipart, chair):
    first, again = (unipart(chair, 3, steps=4, seed=5) for _ in range(2))
    assert len(first.parts) == 3
    for a, b in zip(first.parts, again.parts):
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
