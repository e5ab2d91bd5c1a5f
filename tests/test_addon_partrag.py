"""The add-on end to end with the real PartRAG pipeline: headless bpy, an engine
subprocess serving a tiny trained bundle beside a 3-asset part library, generation through
the console API and through the operator."""

import json
import time

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
    result = linked.api.Current.task.job.result(0)
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
    generation = linked.api.Current.task
    check_asset(linked, generation.root, generation.job.result(0),
                PartLibrary.load(models / "library"))


# ------------------------------------------------------------------ editing


def datablocks(root, addon) -> dict:
    """index -> (object name, mesh name, matrix) of every part of an asset."""
    return {obj["partsmith_index"]: (obj.name, obj.data.name, tuple(map(tuple, obj.matrix_basis)))
            for obj in addon.scene.asset_parts(root)}


def test_api_edits_change_only_the_targets_in_one_undo_step(linked, empty_scene, installed):
    models, image = installed
    root = linked.api.generate(str(image), parts=PARTS, seed=0, steps=1, report=None)
    parts = linked.scene.asset_parts(root)
    assert all(linked.scene.part_of(obj).latent is not None for obj in parts)
    assert linked.scene.reference_bytes(root) == image.read_bytes()
    bpy.ops.ed.undo_push(message="generated")
    before = datablocks(root, linked)
    changed = linked.api.refine([parts[1]], strength=0.5, seed=3, steps=1, report=None)
    assert changed == [parts[1]]
    after = datablocks(root, linked)
    assert {i: v for i, v in after.items() if i != 1} == {i: v for i, v in before.items() if i != 1}
    assert after[1][1] != before[1][1]  # a new mesh datablock
    history = json.loads(root["partsmith_history"])
    assert history == [{"operation": "refine", "targets": [1], "strength": 0.5, "seed": 3,
                        "steps": 1}]
    bpy.ops.ed.undo()
    root = bpy.data.objects["chair_asset"]
    assert datablocks(root, linked) == before


def test_candidates_swap_and_place_from_the_panel(linked, empty_scene, installed):
    models, image = installed
    root = linked.api.generate(str(image), parts=PARTS, seed=0, steps=1, report=None)
    part = linked.scene.asset_parts(root)[0]
    for obj in bpy.context.view_layer.objects.selected:
        obj.select_set(False)
    part.select_set(True)
    bpy.context.view_layer.objects.active = part
    assert bpy.ops.partsmith.find_candidates(count=3) == {"FINISHED"}
    shown = linked.operators.candidates.shown()
    assert 1 <= len(shown) <= 3 and all(c.thumbnail for c in shown)
    library = PartLibrary.load(models / "library")
    assert all(c.asset_id in library.ids for c in shown)
    bpy.context.scene.partsmith.candidate = "0"
    assert bpy.ops.partsmith.edit(operation="place") == {"FINISHED"}
    placed = linked.scene.asset_parts(root)[0]
    expected = library.asset(shown[0].asset_id).parts[shown[0].part]
    assert placed["partsmith_label"] == shown[0].label
    assert len(placed.data.polygons) == len(expected.faces)
    assert bpy.ops.partsmith.edit(operation="vary") == {"FINISHED"}  # refines the selection
    assert bpy.context.scene.partsmith.edit_seed == 2
    assert bpy.ops.partsmith.import_candidate() == {"FINISHED"}
    imported = bpy.data.objects[shown[0].asset_id]
    assert len(linked.scene.asset_parts(imported)) == len(library.asset(shown[0].asset_id).parts)
    assert imported.users_collection[0].name == shown[0].asset_id


def test_a_failed_edit_leaves_the_scene_unchanged(linked, empty_scene, installed):
    models, image = installed
    root = linked.api.generate(str(image), parts=PARTS, seed=0, steps=1, report=None)
    before = scene_snapshot(), datablocks(root, linked)
    part = linked.scene.asset_parts(root)[2]
    with pytest.raises(linked.api.PartsmithError) as error:
        linked.api.place(part, "no-such-asset:0", report=None)
    assert error.value.code == "unknown_asset"
    with pytest.raises(linked.api.PartsmithError) as error:
        linked.api.assemble([part], report=None)
    assert error.value.code == "invalid_part"
    with pytest.raises(linked.api.PartsmithError, match="not the asset root"):
        linked.api.refine([root, part], report=None)
    assert (scene_snapshot(), datablocks(root, linked)) == before


def test_a_cancelled_edit_leaves_the_scene_unchanged(linked, empty_scene, installed):
    models, image = installed
    root = linked.api.generate(str(image), parts=PARTS, seed=0, steps=1, report=None)
    before = scene_snapshot(), datablocks(root, linked)
    edit = linked.api.start_edit([linked.scene.asset_parts(root)[1]], "refine", steps=1000)
    while edit.fraction == 0 and not edit.step():
        time.sleep(0.01)
    linked.api.cancel()
    while not edit.step():
        time.sleep(0.01)
    assert edit.state == "cancelled" and edit.changed == []
    assert (scene_snapshot(), datablocks(root, linked)) == before


def test_edit_after_saving_reopening_and_restarting_the_engine(addon, prefs, empty_scene,
                                                               installed, tmp_path):
    """The .blend carries what editing needs: reopened, with a fresh engine, a moved part is
    encoded where it now is and an untouched one is sent with its stored latent."""
    models, image = installed
    first = EngineProcess(tmp_path, "--models", str(models))
    try:
        prefs.address, prefs.timeout = first.address, 60.0
        root = addon.api.generate(str(image), parts=PARTS, seed=0, steps=1, report=None)
        addon.scene.asset_parts(root)[2].location.x += 0.3  # the artist moves a part
        path = tmp_path / "asset.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
    finally:
        first.stop()
    bpy.ops.wm.open_mainfile(filepath=str(path))
    root = bpy.data.objects["chair_asset"]
    parts = addon.scene.asset_parts(root)
    assert addon.scene.part_of(parts[0]).latent is not None
    assert addon.scene.part_of(parts[2]).latent is None  # moved: the engine re-encodes it
    second = EngineProcess(tmp_path, "--models", str(models))
    try:
        prefs.address = second.address
        moved = tuple(parts[2].matrix_basis.translation)
        changed = addon.api.refine([parts[1]], seed=4, steps=1, report=None)
        assert [obj.name for obj in changed] == [parts[1].name]
        assert tuple(parts[2].matrix_basis.translation) == moved
        assert addon.scene.part_of(parts[1]).latent is not None
    finally:
        second.stop()


def test_any_multi_part_object_can_be_adopted_and_edited(linked, empty_scene, installed):
    """Bring your own asset: two hand-made boxes become an asset where they stood, and a
    refine of one re-encodes it from its mesh (no latents) and keeps the other."""
    made = []
    for n, (location, size) in enumerate((((0, 0, 0.5), (1.0, 1.0, 0.1)),
                                          ((0.4, 0.4, 0.0), (0.1, 0.1, 1.0)))):
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=location)
        obj = bpy.context.active_object
        obj.scale = size
        obj.name = f"hand_made_{n}"
        made.append(obj)
    bpy.context.view_layer.update()
    before = [np.array([obj.matrix_world @ v.co for v in obj.data.vertices]) for obj in made]
    root = linked.api.adopt(made, name="hand_asset")
    bpy.context.view_layer.update()
    parts = linked.scene.asset_parts(root)
    assert [p["partsmith_label"] for p in parts] == ["hand_made_0", "hand_made_1"]
    for obj, points in zip(parts, before):
        placed = np.array([obj.matrix_world @ v.co for v in obj.data.vertices])
        assert np.allclose(np.sort(placed, axis=0), np.sort(points, axis=0), atol=1e-4)
    assert all(linked.scene.part_of(p).latent is None for p in parts)
    kept = parts[0].data.name
    changed = linked.api.refine([parts[1]], seed=2, steps=1, report=None)
    assert changed == [parts[1]] and parts[0].data.name == kept
    assert linked.scene.part_of(parts[1]).latent is not None
    with pytest.raises(linked.api.PartsmithError, match="at least two"):
        linked.api.adopt(made[:1])


# ------------------------------------------------------------------ many images


def test_generate_many_builds_each_asset_and_reports_the_failed_image(linked, empty_scene,
                                                                      installed, tmp_path):
    models, image = installed
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    lines = []
    roots = linked.api.generate_many([str(image), str(bad), str(image)], parts=PARTS, steps=1,
                                     report=lines.append)
    assert roots[1] is None and roots[0] is not None and roots[2] is not None
    assert roots[0] != roots[2]
    assert [len(linked.scene.asset_parts(r)) for r in (roots[0], roots[2])] == [PARTS, PARTS]
    assert len(bpy.data.objects) == 2 * (PARTS + 1)
    assert any("bad.png failed" in line and "PNG" in line for line in lines)
    assert "Partsmith: 3/3 images" in lines


def test_batch_runs_in_the_engine_with_progress_and_resumes(linked, empty_scene, installed,
                                                            tmp_path):
    models, image = installed
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"image": str(image), "name": "one", "steps": 1, "parts": 2})
                    + "\n" + json.dumps({"image": str(tmp_path / "gone.png"), "steps": 1})
                    + "\n")
    lines = []
    summary = linked.api.batch(rows, tmp_path / "out", report=lines.append)
    assert (summary["rows"], summary["ok"], summary["failed"]) == (2, 1, 1)
    assert any(line.startswith("Partsmith: batch") and "%" in line for line in lines)
    assert "1 ok, 1 failed" in lines[-1]
    records = [json.loads(line) for line in (tmp_path / "out" / "batch.jsonl").read_text()
               .splitlines()]
    assert {r["name"]: r.get("code", "ok") for r in records} == {"one": "ok",
                                                                "gone": "missing_image"}
    assert (tmp_path / "out" / "one" / "object.glb").is_file()
    assert len(bpy.data.objects) == 0  # a batch writes files, not the scene
    again = linked.api.batch(rows, tmp_path / "out", report=None)
    assert (again["ok"], again["skipped"]) == (0, 1)  # the missing image is tried again


def test_a_batch_with_a_bad_input_is_refused_with_its_reason(linked, tmp_path):
    with pytest.raises(linked.api.PartsmithError, match="does not exist") as error:
        linked.api.batch(tmp_path / "nothing", tmp_path / "out", report=None)
    assert error.value.code == "invalid_batch_input"


def test_a_cancelled_batch_stops_with_nothing_half_written(linked, empty_scene, installed,
                                                          tmp_path):
    models, image = installed
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"image": str(image), "name": f"slow{n}", "steps": 1000,
                                        "parts": 2}) + "\n" for n in range(3)))
    task = linked.api.start_batch(rows, tmp_path / "out")
    while task.stage in ("sending", "queued") and not task.step():
        time.sleep(0.01)
    linked.api.cancel()
    started = time.perf_counter()
    while not task.step():
        time.sleep(0.01)
    assert task.state == "cancelled" and time.perf_counter() - started < 10
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "batch.jsonl"]
    log = (tmp_path / "out" / "batch.jsonl").read_text()
    assert '"ok"' not in log  # nothing recorded as finished
