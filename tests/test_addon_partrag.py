"""The add-on end to end with the real PartRAG pipeline: headless bpy, an engine
subprocess serving a tiny trained bundle beside a 3-asset part library, generation through
the console API and through the operator."""

import json

import bpy
import numpy as np
import pytest
from mathutils import Matrix
from PIL import Image

from addon_harness import EngineProcess, addon, empty_scene, prefs, scene_snapshot  # noqa: F401
from bridge_harness import watchdog  # noqa: F401
from engine.pipelines.partrag import DEFAULT_STRENGTH, DEFAULT_TOP_K, REFERENCE_GUIDANCE
from engine.retrieval.library import PartLibrary
from partrag_world import build_world, install_models, reference_image

PARTS = 3


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(models folder, reference image path): a shipped-style models/ folder built from a
    tiny world, and a test-split view saved as chair.png."""
    root = tmp_path_factory.mktemp("addon-partrag")
    world = build_world(root / "world")
    image = root / "chair.png"
    Image.fromarray(reference_image(world)).save(image)
    return install_models(world, root), image


@pytest.fixture(scope="module")
def engine(installed, tmp_path_factory):
    process = EngineProcess(tmp_path_factory.mktemp("engine"), "--models", str(installed[0]))
    yield process
    process.stop()


@pytest.fixture
def linked(addon, prefs, engine):
    # Generous: the first job loads the bundle, and decoding at the default 128³ takes seconds.
    prefs.address, prefs.timeout = engine.address, 60.0
    return addon


def check_asset(addon, root, result, library):
    """The scene holds exactly what the engine sent, and the root records how it was made."""
    children = addon.scene.asset_parts(root)
    assert len(root.children) == len(children) == len(result.parts) == PARTS
    bpy.context.view_layer.update()
    for part, child in zip(result.parts, children):
        assert child["partsmith_label"] == part.label
        assert child.name == part.label or child.name.startswith(part.label + ".")
        assert (len(child.data.vertices), len(child.data.polygons)) == (
            len(part.vertices), len(part.faces))
        assert np.allclose(child.matrix_world, root.matrix_world @ Matrix(part.transform.tolist()),
                           atol=1e-5)
    for a, pa in zip(children, result.parts):  # same mesh_id <=> one shared mesh
        for b, pb in zip(children, result.parts):
            assert (a.data == b.data) == (pa.mesh_id == pb.mesh_id)

    retrieved = list(root["partsmith_retrieved"])
    assert retrieved == [hit["asset_id"] for hit in result.metadata["retrieved"]]
    assert len(retrieved) == DEFAULT_TOP_K and set(retrieved) <= set(library.ids)
    # Retrieval-initialised sampling takes its labels from the retrieved assets' parts.
    library_labels = {label for asset_id in retrieved
                      for label in library.assets[library.row(asset_id)]["labels"]}
    assert {part.label for part in result.parts} <= library_labels

    parameters = json.loads(root["partsmith_parameters"])
    assert parameters == {**parameters, "model": "partrag", "parts": PARTS, "seed": 0,
                          "steps": 1, "top_k": DEFAULT_TOP_K, "guidance": REFERENCE_GUIDANCE,
                          "strength": DEFAULT_STRENGTH, "image": "chair.png"}


def test_api_generates_the_real_pipeline_asset_in_one_undo_step(linked, empty_scene, installed):
    models, image = installed
    bpy.ops.ed.undo_push(message="before")
    before = scene_snapshot()
    root = linked.api.generate(str(image), parts=PARTS, seed=0, steps=1, report=None)
    result = linked.api.Current.generation.job.result(0)
    assert root.name == "chair_asset"
    check_asset(linked, root, result, PartLibrary.load(models / "library"))
    assert len(bpy.data.objects) == PARTS + 1
    bpy.ops.ed.undo()
    assert scene_snapshot() == before
    bpy.ops.ed.redo()
    assert len(bpy.data.objects) == PARTS + 1


def test_operator_generates_the_real_pipeline_asset(linked, empty_scene, installed):
    models, image = installed
    settings = bpy.context.scene.partsmith
    settings.image = bpy.data.images.load(str(image))
    linked.engine_link.hello()  # the panel's model list comes from the engine
    assert "partrag" in linked.engine_link.generate_models()
    settings.model, settings.parts, settings.seed, settings.steps = "partrag", PARTS, 0, 1
    assert bpy.ops.partsmith.generate() == {"FINISHED"}  # top-k left at the panel's 3
    generation = linked.api.Current.generation
    check_asset(linked, generation.root, generation.job.result(0),
                PartLibrary.load(models / "library"))
