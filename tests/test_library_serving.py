"""The part library served by a real engine subprocess: search and asset requests through
bridge.client.EngineClient, against a small library built for the test."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from bridge import EngineClient, EngineError
from bridge_harness import EngineProcess
from bridge_harness import watchdog  # noqa: F401 (autouse: bounds every test)
from engine.render.image_prep import frame_object
from engine.retrieval.builder import build_library
from engine.retrieval.encoders import load_encoder
from engine.retrieval.hcr import HCR, HCRConfig
from engine.retrieval.library import PartLibrary
from engine.retrieval.search import Searcher
from engine.retrieval.shape import PartEncoder
from retrieval_data import write_rendered_dataset, write_tiny_vae

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A models folder with a 4-asset library and a (random) HCR retriever, served."""
    root = tmp_path_factory.mktemp("library-serving")
    models = root / "models"
    encoder = load_encoder()
    build_library(write_rendered_dataset(root / "dataset"), models / "library", [encoder],
                  PartEncoder(write_tiny_vae(root / "vae")), size=4, progress=False)
    HCR(HCRConfig(token_dim=1280, latent_dim=4, embed_dim=8, hidden_dim=16, part_queries=3,
                  attention_dim=8)).save_pretrained(models / "retriever")
    engine = EngineProcess(root, "--models", str(models))
    try:
        with EngineClient(engine.address, timeout=60.0) as client:
            yield client, PartLibrary.load(models / "library"), encoder
    finally:
        engine.stop()


def png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()


def test_hello_reports_the_library(served):
    client, library, _ = served
    hello = client.hello()
    assert hello["library_size"] == len(library) == 4  # replaces the test pipeline's 3
    described = {m["operation"]: m for m in hello["models"] if m["name"] == "library"}
    assert set(described) == {"library.search", "library.asset"}
    assert described["library.search"]["assets"] == 4
    assert described["library.search"]["parts"] == library.num_parts
    assert described["library.search"]["part_search"] is True


def test_object_search_ranks_assets_as_the_searcher_does(served):
    client, library, encoder = served
    rgba, _ = library.view(2, 0)
    result = client.library_search(png(rgba), k=3)
    assert result.parts == [] and result.metadata["level"] == "object"
    hits = result.metadata["hits"]
    expected = Searcher(library, encoder).by_image(frame_object(rgba)[0], 3)
    assert [h["asset_id"] for h in hits] == [h.asset_id for h in expected]
    assert np.allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-4)
    assert all(h["part"] is None and h["label"] == library.assets[library.row(h["asset_id"])]
               ["category"] for h in hits)
    assert hits == sorted(hits, key=lambda h: -h["score"])


def test_category_filter_and_part_search(served):
    client, library, _ = served
    rgba, _ = library.view(0, 0)
    category = library.assets[1]["category"]
    hits = client.library_search(png(rgba), k=8, category=category).metadata["hits"]
    have = [a["id"] for a in library.assets if a["category"] == category]
    assert sorted(h["asset_id"] for h in hits) == sorted(have)
    with pytest.raises(EngineError, match="no 'galaxy' assets") as error:
        client.library_search(png(rgba), category="galaxy")
    assert error.value.code == "invalid_parameter"
    parts = client.library_search(png(rgba), k=4, level="part")
    hits = parts.metadata["hits"]
    assert len(hits) == 4 and parts.metadata["level"] == "part"
    for hit in hits:
        row = library.part_row(hit["asset_id"], hit["part"])
        assert hit["label"] == library.part_labels[row]


def test_asset_returns_the_library_parts_and_thumbnail(served):
    client, library, _ = served
    asset_id = library.ids[1]
    result = client.library_asset(asset_id)
    original = library.asset(asset_id)
    assert result.metadata["asset_id"] == asset_id
    assert result.metadata["category"] == original.category
    assert len(result.metadata["colours"]) == len(result.parts) == len(original.parts)
    assert result.arrays["thumbnail"] == library.thumbnail_bytes(1)
    for index, (got, part) in enumerate(zip(result.parts, original.parts)):
        assert (got.label, got.index, got.mesh_id) == (part.label, index, str(part.mesh_id))
        assert got.vertices.dtype == np.float32 and got.faces.dtype == np.int32
        assert np.array_equal(got.vertices, part.vertices)
        assert np.array_equal(got.faces, part.faces)
        assert np.array_equal(got.transform, part.transform)
    bare = client.library_asset(asset_id, thumbnail=False, parts=False)
    assert bare.parts == [] and bare.arrays == {}


def test_unknown_asset_is_a_clear_error_and_the_engine_goes_on(served):
    client, library, _ = served
    with pytest.raises(EngineError) as error:
        client.library_asset("no-such-chair")
    assert error.value.code == "unknown_asset" and "no asset 'no-such-chair'" in str(error.value)
    assert "LibraryError" not in error.value.message and "UnknownAsset" not in error.value.message
    assert len(client.library_asset(library.ids[0], thumbnail=False).parts) > 0
