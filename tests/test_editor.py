"""The masked part editor (PartRAG §3.5): masked flow sampling, the operations on a tiny
trained bundle with its part library, seams, the asset folder round trip and the edit CLI."""

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from bridge.errors import RequestRefused
from bridge.protocol import Part
from engine.cli import main
from engine.geometry.closest import ClosestPoints
from engine.models.flow_sampler import FlowSampler
from engine.pipelines.decode import ExtractSettings
from engine.pipelines.editor import LibraryPart, PartEditor, align_to
from engine.pipelines.outputs import read_asset, write_generation
from engine.pipelines.seams import SEAM_BAND, close_seams
from partrag_world import build_world, install_models, reference_image

FAST = ExtractSettings(resolution=32, coarse_resolution=16)


def box(centre, size, index=0, label="thing_part", rotation=None) -> Part:
    """An axis-aligned box as a Part, local frame centred, translated to `centre`."""
    corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float32)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int32)
    transform = np.eye(4)
    transform[:3, 3] = centre
    if rotation is not None:
        transform[:3, :3] = rotation
    return Part((corners * np.asarray(size, np.float32) / 2), faces, transform, label, index,
                f"mesh{index}")


def grid_sheet(z: float, half: float = 0.5, n: int = 21) -> Part:
    """A flat square sheet of n×n vertices at height z (object frame, identity transform)."""
    axis = np.linspace(-half, half, n)
    xs, ys = np.meshgrid(axis, axis, indexing="ij")
    vertices = np.stack([xs.ravel(), ys.ravel(), np.full(n * n, z)], 1).astype(np.float32)
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]).astype(np.int32)
    return Part(vertices, faces, np.eye(4), "thing_top", 1, "mesh1")


# ------------------------------------------------------------------ masked sampling


def test_frozen_rows_are_renoised_at_every_step_and_come_back_clean():
    torch.manual_seed(0)
    init, noise = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    frozen = torch.tensor([True, False, True])
    seen = []

    def model(latents, timestep, context, counts):
        seen.append((latents.clone(), timestep[0].item() / 1000))
        return torch.ones_like(latents)

    sampler = FlowSampler()
    out = sampler.sample(model, noise, torch.zeros(3, 1, 5), 3, steps=4, guidance=1.0,
                         init=init, strength=0.6, frozen=frozen)
    for latents, sigma in seen:
        expected = (1 - sigma) * init[frozen] + sigma * noise[frozen]
        assert torch.allclose(latents[frozen], expected, atol=1e-6)
    assert torch.equal(out[frozen], init[frozen])
    # The sampled row follows the Euler steps from its own noised start: v = 1 over 0.6 of σ.
    start = 0.4 * init[1] + 0.6 * noise[1]
    assert torch.allclose(out[1], start + 0.6, atol=1e-5)
    seen.clear()
    sampler.sample(model, noise, torch.zeros(3, 1, 5), 3, steps=2, guidance=1.0, init=init,
                   strength=1.0, frozen=frozen, renoise_frozen=False)
    assert all(torch.equal(latents[frozen], init[frozen]) for latents, _ in seen)
    with pytest.raises(ValueError, match="at least one row"):
        sampler.sample(model, noise, torch.zeros(3, 1, 5), 3, steps=1, init=init, strength=0.5,
                       frozen=torch.ones(3, dtype=torch.bool))


# ------------------------------------------------------------------ geometry helpers


def test_closest_points_match_a_cube_exactly():
    cube = box((0, 0, 0), (2, 2, 2))
    surface = ClosestPoints(cube.object_vertices(), cube.faces)
    rng = np.random.default_rng(0)
    points = rng.uniform(-3, 3, (500, 3))
    outside = np.abs(points).max(1) > 1
    closest, distance = surface.query(points[outside])
    expected = np.clip(points[outside], -1, 1)
    assert np.allclose(closest, expected, atol=1e-9)
    assert np.allclose(distance, np.linalg.norm(points[outside] - expected, axis=1))
    inside = points[~outside]
    _, distance = surface.query(inside)
    assert np.allclose(distance, 1 - np.abs(inside).max(1), atol=1e-9)


def test_align_fits_the_library_part_into_the_targets_place():
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    target = box((0.3, -0.2, 0.1), (0.2, 0.4, 0.1), index=2, rotation=rotation)
    source = box((-0.5, 0.5, 0.5), (0.1, 0.1, 0.8), label="chair_leg")
    fitted = align_to(target, source)
    assert np.array_equal(fitted.transform, target.transform) and fitted.index == 2
    assert fitted.label == "chair_leg"
    size = fitted.vertices.max(0) - fitted.vertices.min(0)
    assert size.max() == pytest.approx(0.4) and size == pytest.approx([0.05, 0.05, 0.4])
    centre = (fitted.vertices.max(0) + fitted.vertices.min(0)) / 2
    assert np.allclose(centre, 0, atol=1e-6)


def test_seams_snap_the_edited_part_onto_its_frozen_neighbour():
    frozen = box((0, 0, 0), (1.0, 1.0, 1.0))
    near = grid_sheet(0.5 + 0.6 * SEAM_BAND)  # just above the cube's top face
    far = grid_sheet(0.5 + 3 * SEAM_BAND)
    closed_near, untouched = close_seams([near, far], [frozen])
    assert untouched is far
    z = closed_near.object_vertices()[:, 2]
    inner = (np.abs(near.vertices[:, :2]) < 0.45).all(1)
    assert np.allclose(z[inner], 0.5, atol=1e-6)  # on the top face
    assert np.array_equal(frozen.vertices, box((0, 0, 0), (1, 1, 1)).vertices)


# ------------------------------------------------------------------ the editor


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("editor"))
    models = install_models(world, tmp_path_factory.mktemp("installed"))
    return world, models


@pytest.fixture(scope="module")
def editor(installed):
    world, models = installed
    return PartEditor.from_pretrained(models / "partrag", extract=FAST)


@pytest.fixture(scope="module")
def asset(installed, editor):
    world, _ = installed
    return editor.pipeline(reference_image(world), 3, steps=2, seed=0, top_k=1)


def assert_frozen_untouched(result, parts, targets):
    for i, part in enumerate(parts):
        if i not in targets:
            assert result.parts[i] is part and result.reports[i] == {"edited": False}


def test_refine_changes_the_targets_only_and_follows_the_seed(installed, editor, asset):
    world, _ = installed
    image = reference_image(world)
    parts = asset.parts
    result = editor(parts, [1], "refine", image=image, steps=2, seed=3)
    assert_frozen_untouched(result, parts, [1])
    assert result.reports[1]["edited"] and result.parts[1].label == parts[1].label
    assert result.parts[1].latent.shape == parts[1].latent.shape
    assert not np.array_equal(result.parts[1].latent, parts[1].latent)
    assert result.parts[1].mesh_id not in {p.mesh_id for p in parts}
    again = editor(parts, [1], "refine", image=image, steps=2, seed=3)
    assert np.array_equal(again.parts[1].latent, result.parts[1].latent)
    other = editor(parts, [1], "refine", image=image, steps=2, seed=4)
    assert not np.array_equal(other.parts[1].latent, result.parts[1].latent)
    assert result.params["operation"] == "refine" and result.params["targets"] == [1]


def test_place_puts_the_library_part_itself_in_the_targets_place(editor, asset):
    library = editor.pipeline.library
    source = LibraryPart(library.ids[0], 0)
    started = time.perf_counter()
    result = editor(asset.parts, [2], "place", source=source)
    assert time.perf_counter() - started < 0.5
    assert_frozen_untouched(result, asset.parts, [2])
    placed, original = result.parts[2], library.asset(source.asset_id).parts[0]
    assert placed.label == original.label and len(placed.faces) == len(original.faces)
    assert np.array_equal(placed.transform, asset.parts[2].transform)
    assert placed.latent.shape == asset.parts[2].latent.shape
    assert result.params["steps"] == 0


def test_swap_interpolate_and_assemble_run_and_keep_the_rest(installed, editor, asset):
    world, _ = installed
    library, parts = editor.pipeline.library, asset.parts
    swapped = editor(parts, [0], "swap", source=LibraryPart(library.ids[1], 0), steps=2)
    assert_frozen_untouched(swapped, parts, [0])
    assert swapped.parts[0].label == library.asset(library.ids[1]).parts[0].label
    candidates = editor.search(parts, 0, k=4)
    assert candidates and all(library.asset(c.asset_id).parts[c.part].label == parts[0].label
                              for c in candidates) or all(
        library.part_labels[i] != parts[0].label for i in range(library.num_parts))
    moved = editor(parts, [0], "interpolate", alpha=0.5, steps=2)
    assert_frozen_untouched(moved, parts, [0])
    joint = editor(parts, [0, 2], "assemble", image=reference_image(world), steps=2)
    assert_frozen_untouched(joint, parts, [0, 2])
    assert joint.params["strength"] == 1.0


def test_parts_without_latents_are_encoded_at_their_current_pose(editor, asset):
    """Bring your own asset: plain meshes, no latents; a moved part is encoded where it is."""
    parts = [box((0.0, 0.0, -0.3), (0.8, 0.8, 0.1), 0), box((0.0, 0.0, 0.2), (0.1, 0.1, 0.8), 1)]
    result = editor(parts, [1], "refine", steps=1)
    assert result.parts[0] is parts[0]
    latents = editor.latents_of(parts, seed=0)
    moved = [parts[0], box((0.5, 0.0, 0.2), (0.1, 0.1, 0.8), 1)]
    assert not np.allclose(editor.latents_of(moved, seed=0)[1], latents[1])


@pytest.mark.parametrize("targets, operation, options, code", [
    ([], "refine", {}, "invalid_part"),
    ([5], "refine", {}, "invalid_part"),
    ([1, 1], "assemble", {}, "invalid_part"),
    ([1], "assemble", {}, "invalid_part"),
    ([1], "swap", {}, "invalid_parameter"),
    ([1], "place", {"source": LibraryPart("no-such-asset", 0)}, "unknown_asset"),
    ([1], "interpolate", {"alpha": 1.5}, "invalid_parameter"),
    ([1], "refine", {"strength": 0.0}, "invalid_parameter"),
    ([1], "melt", {}, "invalid_parameter"),
])
def test_bad_edits_are_refused_with_their_own_codes(editor, asset, targets, operation, options,
                                                     code):
    with pytest.raises(RequestRefused) as refused:
        editor(asset.parts, targets, operation, steps=1, **options)
    assert refused.value.code == code


def test_a_latent_of_the_wrong_shape_is_refused(editor, asset):
    parts = [p for p in asset.parts]
    parts[0] = Part(parts[0].vertices, parts[0].faces, parts[0].transform, parts[0].label, 0,
                    parts[0].mesh_id, latent=np.zeros((3, 3), np.float32))
    with pytest.raises(RequestRefused) as refused:
        editor(parts, [1], "refine", steps=1)
    assert refused.value.code == "invalid_latent"


# ------------------------------------------------------------------ files and CLI


def test_asset_folder_round_trip_is_exact(installed, asset, tmp_path):
    write_generation(asset, tmp_path, preview=False)
    saved = read_asset(tmp_path)
    assert np.array_equal(saved.reference, asset.reference)
    for a, b in zip(asset.parts, saved.parts):
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
        assert np.array_equal(a.transform, b.transform)
        assert (a.label, a.index, a.mesh_id) == (b.label, b.index, b.mesh_id)
        assert np.array_equal(a.latent.astype(np.float16).astype(np.float32), b.latent)
    assert saved.params["model"] == asset.params["model"]
    with pytest.raises(FileNotFoundError, match="not the output"):
        read_asset(tmp_path / "nothing")


def test_edit_cli_refines_a_generated_folder_and_keeps_the_rest(installed, tmp_path):
    world, models = installed
    image = tmp_path / "input.png"
    Image.fromarray(reference_image(world)).save(image)
    made, edited = tmp_path / "made", tmp_path / "edited"
    assert main(["generate", str(image), "--parts", "3", "--model", str(models / "partrag"),
                 "--steps", "1", "--top-k", "1", "--max-faces", "500", "--out", str(made)]) == 0
    assert main(["edit", str(made), "--parts", "1", "--refine", "--steps", "1", "--seed", "2",
                 "--out", str(edited)]) == 0
    before, after = read_asset(made), read_asset(edited)
    for i in (0, 2):
        assert np.array_equal(before.parts[i].vertices, after.parts[i].vertices)
        assert np.array_equal(before.parts[i].transform, after.parts[i].transform)
        assert (edited / f"part_{i:02d}.glb").read_bytes() == (made / f"part_{i:02d}.glb").read_bytes()
    rows = json.loads((edited / "parts.json").read_text())["parts"]
    assert [r["edited"] for r in rows] == [False, True, False]
    assert all("pieces" in r for r in rows)  # frozen parts keep what generate reported
    library = json.loads((models / "library" / "library.json").read_text())["assets"][0]["id"]
    placed = tmp_path / "placed"
    assert main(["edit", str(edited), "--parts", "0", "--place", f"{library}:0",
                 "--out", str(placed)]) == 0
    assert main(["edit", str(edited), "--parts", "7", "--refine", "--out",
                 str(tmp_path / "bad")]) == 2


def test_engine_serves_edits_of_what_it_generated(installed, tmp_path):
    """Over the bridge: generate, then refine one part of the result; the frozen parts come
    back with the very arrays they were sent with, and a bad edit gets its own code."""
    from bridge import EngineClient
    from bridge.errors import EngineError
    from bridge_harness import EngineProcess

    world, models = installed
    engine = EngineProcess(tmp_path, "--models", str(models))
    try:
        with EngineClient(engine.address) as client:
            made = client.generate(reference_image(world), parts=3, seed=1, steps=1, top_k=1)
            edited = client.edit(made.parts, [made.parts[1].index], operation="refine",
                                 steps=1, seed=5, image=reference_image(world))
            for before, after in zip(made.parts, edited.parts):
                assert before.index == after.index
                if before.index != made.parts[1].index:
                    assert np.array_equal(before.vertices, after.vertices)
                    assert np.array_equal(before.faces, after.faces)
                    assert np.array_equal(before.transform, after.transform)
            assert not np.array_equal(edited.parts[1].latent, made.parts[1].latent)
            assert [r["edited"] for r in edited.metadata["reports"]] == [False, True, False]
            with pytest.raises(EngineError) as refused:
                client.edit(made.parts, [0], operation="place", source="no-such-asset:0")
            assert refused.value.code == "unknown_asset"
            assert len(client.edit(made.parts, [0, 2], operation="assemble", steps=1).parts) == 3
            found = client.candidates(made.parts[0], k=2)
            listed = found.metadata["candidates"]
            assert 1 <= len(listed) <= 2 and len(found.arrays) == len(listed)
            assert all(isinstance(found.arrays[f"thumbnails/{n}"], bytes) for n in range(len(listed)))
            swapped = client.edit(made.parts, [0], operation="place",
                                  source=f"{listed[0]['asset_id']}:{listed[0]['part']}")
            assert swapped.parts[0].label == listed[0]["label"]
    finally:
        engine.stop()


def test_eval_editing_scores_every_edit_and_the_ablations(installed, editor):
    from engine.eval.editing import evaluate_editing, markdown_table, summarise

    world, _ = installed
    rows = evaluate_editing(editor, world["data"], "test", limit=1, ablation_limit=1, steps=1,
                            progress=False)
    operations = {r["operation"] for r in rows}
    assert {"refine", "assemble"} <= operations
    ours = [r for r in rows if r["row"] == "masked flow (ours)"]
    assert all(r["bit_identical"] and r["preservation_iou"] == 1.0 for r in ours)
    assert {r["row"] for r in rows} == {"masked flow (ours)", "w/o re-noised context",
                                        "w/o masked flow"}
    assert all("semantic" in r for r in rows if r["operation"] == "swap")
    table = summarise(rows)
    assert table[0]["operation"] == "all" and table[0]["edits"] == len(ours)
    assert "| masked flow (ours), all |" in markdown_table(table)


def test_swaps_retry_from_the_next_candidate_below_the_semantic_threshold(installed, editor,
                                                                          asset, monkeypatch):
    """With a retriever (an untrained HCR of the right sizes: the check's logic, not its
    quality, is under test) a swap reports its score; a margin nothing passes makes it try
    up to SEMANTIC_TRIES candidates and keep the best."""
    from engine.pipelines import editor as editor_module
    from engine.retrieval.hcr import HCR, HCRConfig

    channels = editor.pipeline.transformer.config.in_channels
    checked = PartEditor(editor.pipeline, HCR(HCRConfig(latent_dim=channels)).eval())
    library = editor.pipeline.library
    label = library.part_labels[0]
    source = LibraryPart(library.ids[library.part_asset[0]], int(library.part_index[0]))
    once = checked(asset.parts, [1], "swap", source=source, steps=1)
    score = once.reports[1]["semantic_score"]
    assert -2 <= score <= 2 and once.reports[1]["tries"] == (1 if score > 0 else
                                                             once.reports[1]["tries"])
    monkeypatch.setattr(editor_module, "SEMANTIC_THRESHOLD", 2.01)
    retried = checked(asset.parts, [1], "swap", source=source, steps=1)
    same_label = sum(1 for lab in library.part_labels if lab == label)
    assert retried.reports[1]["tries"] == min(editor_module.SEMANTIC_TRIES, same_label)
    assert retried.parts[1].label == label
    assert_frozen_untouched(retried, asset.parts, [1])


def test_seams_put_a_part_back_onto_the_neighbour_it_touched_before():
    frozen = box((0, 0, 0), (1.0, 1.0, 1.0))
    before = grid_sheet(0.5 + 0.005)  # resting on the cube's top face
    floated = grid_sheet(0.5 + 0.3)  # the edit lifted it off
    (back,) = close_seams([floated], [frozen], before=[before])
    z = back.object_vertices()[:, 2]
    assert abs(z.min() - 0.5) < 1e-6 and np.ptp(z) < 1e-6
    assert back.vertices is not floated.vertices or np.array_equal(back.vertices, floated.vertices)
    (alone,) = close_seams([floated], [frozen], before=[grid_sheet(0.5 + 0.3)])
    assert alone is floated  # it did not touch before: nothing to restore
