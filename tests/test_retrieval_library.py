import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from engine.cli import main
from engine.retrieval.builder import build_library
from engine.retrieval.compact import STEPS, decode_rgba, encode_rgba, quantise, unpack_mesh
from engine.retrieval.encoders import load_encoder
from engine.retrieval.evaluate import Query, query_vectors
from engine.retrieval.hcr import HCR, HCRConfig
from engine.retrieval.importers import import_asset, part_name
from engine.retrieval.index import VectorIndex
from engine.retrieval.library import INDEX_NAME, LibraryError, PartLibrary
from engine.retrieval.library_writer import write_library
from engine.retrieval.search import HCR_OBJECT_WEIGHT, Searcher
from engine.retrieval.selection import coverage, normalise, spherical_kmeans_medoids
from engine.retrieval.shape import PartEncoder
from retrieval_data import SPLITS, write_rendered_dataset, write_tiny_vae

torch.set_num_threads(1)


def test_kmeans_medoids_cover_well_separated_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    points = np.concatenate([c + 0.05 * rng.normal(size=(20, 16)) for c in centres])
    chosen = spherical_kmeans_medoids(points, 5, seed=1)
    assert len(chosen) == 5 and len(set(chosen // 20)) == 5  # one medoid per cluster
    assert coverage(points, chosen) > 0.99
    assert (spherical_kmeans_medoids(points, 100) == np.arange(100)).all()
    picked = spherical_kmeans_medoids(points, 37, seed=2)
    assert len(np.unique(picked)) == 37
    with pytest.raises(ValueError, match="cannot choose"):
        spherical_kmeans_medoids(points, 101)


def test_index_exact_and_ivf_agree_and_skip_missing_vectors():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2000, 32)).astype(np.float32)
    vectors[7] = 0.0  # a part no view shows
    exact, ivf = VectorIndex(vectors), VectorIndex(vectors, exact_limit=100)
    assert exact.kind == "flat" and ivf.kind.startswith("ivf") and len(exact) == 1999
    queries = vectors[[1, 2, 3]] + 0.01 * rng.normal(size=(3, 32)).astype(np.float32)
    scores, rows = exact.search(queries, 3)
    assert (rows[:, 0] == [1, 2, 3]).all() and np.all(np.diff(scores, axis=1) <= 0)
    assert (ivf.search(queries, 3)[1][:, 0] == [1, 2, 3]).all()
    assert 7 not in exact.search(np.zeros((1, 32)) + vectors[7:8] + 1.0, 1999)[1]
    small = VectorIndex(vectors[:2])
    assert (small.search(vectors[:1], 4)[1][0] == [0, 1, -1, -1]).all()
    with pytest.raises(ValueError, match="dimensions"):
        exact.search(np.zeros((1, 8)), 1)


def test_a_trained_ivf_index_is_kept_and_read_back(tmp_path, monkeypatch):
    import faiss

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 32)).astype(np.float32)
    first = VectorIndex(vectors, exact_limit=100, keep_in=tmp_path)
    VectorIndex(vectors[:1500], exact_limit=100, keep_in=tmp_path)
    assert len(list(tmp_path.glob("index-*.faiss"))) == 2  # one per set of vectors
    monkeypatch.setattr(faiss.IndexIVFFlat, "train", lambda *a: pytest.fail("trained again"))
    again = VectorIndex(vectors, exact_limit=100, keep_in=tmp_path)
    assert again.kind == first.kind
    queries = vectors[:20]
    np.testing.assert_array_equal(first.search(queries, 5)[1], again.search(queries, 5)[1])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("library")
    dataset = write_rendered_dataset(root / "dataset")
    vae = write_tiny_vae(root / "vae")
    encoder = load_encoder()
    summary = build_library(dataset, root / "library", [encoder], PartEncoder(vae), size=4,
                            progress=False)
    return dataset, vae, root / "library", encoder, summary


def test_build_keeps_medoids_with_everything_an_asset_needs(built):
    dataset, vae, folder, encoder, summary = built
    assert summary["assets"] == 4 and summary["candidates"] == len(SPLITS["train"])
    library = PartLibrary.load(folder)
    assert len(library) == 4 and library.encoders == ["efficientnet-lite0"]
    manifest = json.loads((dataset / "manifest.json").read_text())
    names = [r["name"] for r in manifest["splits"]["train"]]
    assert set(library.ids) <= set(names)
    from engine.data.dataset import load_asset

    for row, asset_id in enumerate(library.ids):
        original = load_asset(dataset / "train" / asset_id)
        asset = library.asset(asset_id)
        assert asset.labels == original.labels
        for mine, theirs in zip(asset.parts, original.parts):
            # Quantised vertices: within 1e-3 in the canonical (object) frame, by far.
            error = np.abs(mine.object_vertices() - theirs.object_vertices()).max()
            assert error < 2e-5 and mine.vertices.dtype == np.float32
            np.testing.assert_array_equal(mine.faces, theirs.faces)
            np.testing.assert_array_equal(mine.transform, theirs.transform)
            assert mine.mesh_id == theirs.mesh_id
    parts = len(asset.parts)
    assert library.latents(row).shape == (parts, 8, 4)
    assert library.embeddings("efficientnet-lite0", "part").shape == (library.num_parts, 1280)
    assert library.thumbnail(0).shape == (128, 128, 4)
    # One stored view by default (of the dataset's two), bit for bit with its mask.
    assert library.info["stored_views"] == 1 and all(a["views"] == 1 for a in library.assets)
    rgba, mask = library.view(0, 0)
    folder = dataset / "train" / library.ids[0]
    np.testing.assert_array_equal(mask, np.asarray(Image.open(folder / "mask_00.png")))
    np.testing.assert_array_equal(rgba, np.asarray(Image.open(folder / "view_00.png")))
    with pytest.raises(LibraryError, match="1 stored views"):
        library.view(0, 1)
    assert library.shape_features("object").shape == (4, 4)


def test_stored_views_change_the_images_only(built, tmp_path):
    dataset, vae, folder, encoder, _ = built
    default = PartLibrary.load(folder)
    sizes = {}
    for stored in (0, 2):
        build_library(dataset, tmp_path / str(stored), [encoder], PartEncoder(vae), size=4,
                      progress=False, stored_views=stored)
        library = PartLibrary.load(tmp_path / str(stored))
        assert library.ids == default.ids and library.info["stored_views"] == stored
        assert all(a["views"] == stored for a in library.assets)
        for level in ("object", "part"):  # embeddings come from all the views either way
            np.testing.assert_array_equal(library.embeddings(encoder.key, level),
                                          default.embeddings(encoder.key, level))
        np.testing.assert_array_equal(library.thumbnail(0), default.thumbnail(0))
        sizes[stored] = (tmp_path / str(stored) / library.info["images"]).stat().st_size
    default_size = (folder / default.info["images"]).stat().st_size
    assert sizes[0] < default_size < sizes[2]
    np.testing.assert_array_equal(library.view(0, 1)[1], np.asarray(
        Image.open(dataset / "train" / library.ids[0] / "mask_01.png")))
    with pytest.raises(LibraryError, match="0 or more"):
        build_library(dataset, tmp_path / "bad", [encoder], PartEncoder(vae), size=4,
                      progress=False, stored_views=-1)


def test_meshes_quantise_within_half_a_step_and_images_are_lossless():
    rng = np.random.default_rng(0)
    leg = rng.uniform(-0.1, 0.1, (40, 3)).astype(np.float32)
    flat = np.c_[rng.uniform(-1, 1, (30, 2)), np.zeros(30)].astype(np.float32)  # no z extent
    for vertices in (leg, flat):
        origin, step, q = quantise(vertices)
        table = {"mesh_vertices": np.array([0, len(q)]), "mesh_faces": np.array([0, 1]),
                 "mesh_origin": origin[None], "mesh_step": step[None], "vertices": q,
                 "faces": np.array([[0, 1, 2]], np.uint16)}
        unpacked, _ = unpack_mesh(table, 0)
        extent = vertices.max(0) - vertices.min(0)
        assert q.dtype == np.uint16
        assert (np.abs(unpacked - vertices) <= extent / STEPS / 2 + 1e-7).all()
    assert (quantise(flat)[2][:, 2] == 0).all()
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    rgba[:4, :, 3] = 0  # colours under transparent pixels survive too
    np.testing.assert_array_equal(decode_rgba(encode_rgba(rgba)), rgba)
    opaque = rgba.copy()
    opaque[..., 3] = 255
    np.testing.assert_array_equal(decode_rgba(encode_rgba(opaque)), opaque)


def test_library_loads_fast_and_rejects_other_versions(built, tmp_path):
    folder = built[2]
    started = time.perf_counter()
    PartLibrary.load(folder)
    assert time.perf_counter() - started < 0.5
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    info = json.loads((copy / INDEX_NAME).read_text())
    for old in (1, 99):
        (copy / INDEX_NAME).write_text(json.dumps({**info, "version": old}))
        with pytest.raises(LibraryError, match=f"version {old}, this engine reads version 2; "
                           "rebuild"):
            PartLibrary.load(copy)
    with pytest.raises(LibraryError, match="not a part library"):
        PartLibrary.load(tmp_path)


def test_rewrite_is_atomic_and_leaves_no_stale_files(built, tmp_path):
    library = PartLibrary.load(built[2])
    records = list(library.iter_records())
    folder = tmp_path / "lib"
    encoders, shape = {"efficientnet-lite0": 1280}, library.info["shape"]
    write_library(folder, iter(records), encoders, shape, 1)  # a generator is enough
    first = sorted(p.name for p in folder.iterdir())
    write_library(folder, records[:2], encoders, shape, 1)
    second = sorted(p.name for p in folder.iterdir())
    assert len(first) == len(second) == 3 and first != second  # no staging folder left
    rewritten = PartLibrary.load(folder)
    assert len(rewritten) == 2
    # A rewrite (what `library add` does) keeps meshes, images and embeddings as they were,
    # identical meshes (instanced legs) once, and faces in uint16.
    for row in range(2):
        for mine, theirs in zip(rewritten.part_asset_of(row).parts,
                                library.part_asset_of(row).parts):
            np.testing.assert_allclose(mine.vertices, theirs.vertices, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(mine.faces, theirs.faces)
        assert rewritten.thumbnail_bytes(row) == library.thumbnail_bytes(row)
    np.testing.assert_array_equal(rewritten.embeddings("efficientnet-lite0", "part"),
                                  library.embeddings("efficientnet-lite0", "part")[
                                      :rewritten.num_parts])
    distinct = len({(r.id, p.mesh_id) for r in records[:2] for p in r.asset.parts})
    assert len(rewritten.arrays["mesh_step"]) <= distinct < rewritten.num_parts
    assert rewritten.arrays["faces"].dtype == np.uint16
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(LibraryError, match="duplicate"):
        write_library(folder, records[:1] * 2, encoders, shape, 1)
    with pytest.raises(LibraryError, match="stores 0 of each"):
        write_library(folder, records, encoders, shape, 0)
    assert sorted(p.name for p in folder.iterdir()) == before  # refused writes change nothing


def test_a_part_beyond_65536_vertices_gets_uint32_faces(built, tmp_path):
    library = PartLibrary.load(built[2])
    record = next(library.iter_records())
    rng = np.random.default_rng(0)
    big = replace(record.asset.parts[0], vertices=rng.normal(size=(70_000, 3)).astype(np.float32),
                  faces=np.array([[0, 1, 69_999]], np.int32))
    record.asset.parts[0] = big
    write_library(tmp_path / "lib", [record], {"efficientnet-lite0": 1280},
                  library.info["shape"], 1)
    rewritten = PartLibrary.load(tmp_path / "lib")
    assert rewritten.arrays["faces"].dtype == np.uint32
    np.testing.assert_array_equal(rewritten.part_asset_of(0).parts[0].faces, big.faces)


def test_searches_by_image_mask_text_and_part(built):
    dataset, _, folder, encoder, _ = built
    library = PartLibrary.load(folder)
    searcher = Searcher(library, encoder)
    rgba, mask = library.view(0, 0)
    hits = searcher.by_image(rgba, 3)
    assert hits[0].asset_id == library.ids[0] and hits[0].part is None
    assert hits[0].label == library.assets[0]["category"] and hits[0].score > 0.9
    part_hits = searcher.by_image(rgba, 2, mask == 0)
    assert (part_hits[0].asset_id, part_hits[0].part) == (library.ids[0], 0)
    label = library.part_labels[0]
    text_hits = searcher.by_text(label, 2)
    assert text_hits[0].label == label and text_hits[0].score == 1.0
    swaps = searcher.by_part(library.ids[0], 0, 3)
    assert all(h.asset_id != library.ids[0] for h in swaps) and len(swaps) == 3
    with pytest.raises(LibraryError, match="needs an HCR retriever"):
        searcher.parts_in_image(rgba)
    with pytest.raises(ValueError, match="selects no pixels"):
        searcher.by_image(rgba, 1, np.zeros(mask.shape, dtype=bool))


def test_hcr_space_searches_the_libraries_latents(built):
    _, _, folder, encoder, _ = built
    library = PartLibrary.load(folder)
    retriever = HCR(HCRConfig(token_dim=1280, latent_dim=4, embed_dim=8, hidden_dim=16,
                              part_queries=3, attention_dim=8)).eval()
    searcher = Searcher(library, encoder, retriever)
    rgba, mask = library.view(1, 0)
    assert len(searcher.by_image(rgba, 2)) == 2
    assert searcher.by_image(rgba, 2, mask == 1)[0].part is not None
    free = searcher.parts_in_image(rgba, 4)
    assert len(free) == 4 and len({(h.asset_id, h.part) for h in free}) == 4
    wrong = HCR(HCRConfig(latent_dim=5))
    with pytest.raises(LibraryError, match="latent channels"):
        Searcher(library, encoder, wrong)


def test_hcr_object_queries_pool_as_training_and_blend_the_encoders_cosine(built):
    _, _, folder, encoder, _ = built
    library = PartLibrary.load(folder)
    retriever = HCR(HCRConfig(token_dim=1280, latent_dim=4, embed_dim=8, hidden_dim=16,
                              part_queries=3, attention_dim=8)).eval()
    hcr, plain = Searcher(library, encoder, retriever), Searcher(library, encoder)
    rgba, mask = library.view(1, 0)
    # Training's x_obj is the mean of the mask-pooled parts; without masks, the mean of the
    # part queries' pooled tokens (not the foreground's tokens).
    _, pooled = retriever.part_queries(encoder.encode([rgba]).tokens)
    image = retriever.embed("object", "image", pooled.mean(1))
    shapes = retriever.embed("object", "shape", torch.from_numpy(library.shape_features("object")))
    cos_hcr = (image @ shapes.T)[0].numpy()
    cos_plain = normalise(plain.vectors("object")) @ normalise(plain.image_vector(rgba))
    query, assets = hcr.image_vector(rgba), hcr.vectors("object")
    w = HCR_OBJECT_WEIGHT
    np.testing.assert_allclose(assets @ query, w * cos_hcr + (1 - w) * cos_plain, atol=1e-3)
    hits = hcr.by_image(rgba, 4)
    np.testing.assert_allclose([h.score for h in hits], np.sort(assets @ query)[::-1], atol=1e-3)
    # The figures of `eval retrieval` come from the same query vector.
    labels = library.assets[1]["labels"]
    evaluated = query_vectors(hcr, encoder, Query("", labels, rgba, mask, library.ids[1]))[0]
    np.testing.assert_allclose(evaluated, query, atol=1e-6)


def write_glb(path, seat_width: float = 1.0):
    seat = trimesh.creation.box((seat_width, 0.2, 1.0))
    leg = trimesh.creation.cylinder(0.05, 0.8)
    scene = trimesh.Scene()
    up = trimesh.transformations.translation_matrix((0, 0.9, 0))
    scene.add_geometry(seat, node_name="seat", transform=up)
    for i, (x, z) in enumerate([(-0.4, -0.4), (0.4, -0.4), (-0.4, 0.4), (0.4, 0.4)]):
        matrix = trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0))
        matrix[:3, 3] = (x, 0.4, z)
        scene.add_geometry(leg, node_name=f"leg.{i:03d}", geom_name="leg", transform=matrix)
    scene.export(path)
    return path


def test_importers_read_glb_nodes_and_obj_groups(tmp_path):
    asset = import_asset(write_glb(tmp_path / "stool.glb"), "stool")
    assert asset.labels == ["stool_leg"] * 4 + ["stool_seat"]
    assert len({p.mesh_id for p in asset.parts}) == 2  # the four legs share one mesh
    verts = np.concatenate([p.object_vertices() for p in asset.parts])
    assert np.isclose((verts.max(0) - verts.min(0)).max(), 2.0)
    np.testing.assert_allclose((verts.max(0) + verts.min(0)) / 2, 0.0, atol=1e-6)
    obj = tmp_path / "thing.obj"
    tet = "f {0} {1} {2}\nf {0} {1} {3}\nf {0} {2} {3}\nf {1} {2} {3}\n"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nv 2 0 0\nv 3 0 0\nv 2 1 0\nv 2 0 1 1\n"
                   "g Body\n" + tet.format(1, 2, 3, 4)
                   + "o Handle_2\n" + tet.format(-4, -3, -2, -1))
    thing = import_asset(obj, "jug", {"Body": "jug_body"})
    assert thing.labels == ["jug_body", "jug_handle"]
    assert [len(p.faces) for p in thing.parts] == [4, 4]
    assert part_name("Leg.001") == "leg" and part_name("Arm Rest_12") == "arm_rest"
    with pytest.raises(ValueError, match="no parts named"):
        import_asset(obj, "jug", {"Lid": "jug_lid"})
    with pytest.raises(ValueError, match="unsupported format"):
        import_asset(tmp_path / "x.ply", "jug")


def test_cli_add_glb_then_search_finds_its_parts(built, tmp_path, capsys):
    dataset, vae, folder, _, _ = built
    library = tmp_path / "library"
    assert main(["library", "build", "--data", str(dataset), "--vae", str(vae), "--out",
                 str(library), "--size", "3", "--stored-views", "2", "--device", "cpu",
                 "--threads", "1"]) == 0
    glb = write_glb(tmp_path / "stool.glb")
    assert main(["library", "add", str(glb), "--library", str(library), "--category", "stool",
                 "--label", "seat=stool_top", "--device", "cpu"]) == 0
    loaded = PartLibrary.load(library)
    assert len(loaded) == 4 and loaded.assets[-1]["category"] == "stool"
    assert [a["views"] for a in loaded.assets] == [2] * 4  # the library's policy, kept by add
    new = loaded.ids[-1]
    assert loaded.asset(new).labels == ["stool_leg"] * 4 + ["stool_top"]
    rgba, mask = loaded.view(3, 0)
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4, 255} and (mask == 4).any()
    query = tmp_path / "query.png"
    Image.fromarray(rgba).save(query)
    capsys.readouterr()
    assert main(["library", "search", "--library", str(library), "--image", str(query),
                 "--json", "--k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["asset_id"] == new and hits[0]["label"] == "stool" and hits[0]["part"] is None
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    assert main(["library", "search", "--library", str(library), "--image", str(query),
                 "--mask", str(mask_path), "--part", "4", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert (hits[0]["asset_id"], hits[0]["part"], hits[0]["label"]) == (new, 4, "stool_top")
    assert main(["library", "search", "--library", str(library), "--text", "stool top",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == "stool_top"
    assert main(["library", "search", "--library", str(library), "--asset", new, "--part", "0",
                 "--json"]) == 0
    assert all(h["asset_id"] != new for h in json.loads(capsys.readouterr().out))
    assert main(["library", "info", str(library)]) == 0
    assert "4 assets" in (out := capsys.readouterr().out) and "2 stored views each" in out
    assert main(["library", "add", str(glb), "--library", str(library), "--device", "cpu"]) == 2
    assert "already in the library" in capsys.readouterr().err
    assert main(["library", "search", "--library", str(library), "--asset", "nope", "--part",
                 "0"]) == 2
    assert "no asset 'nope'" in capsys.readouterr().err


def test_add_a_folder_skips_bad_files_with_their_reason_and_resumes(built, tmp_path,
                                                                    monkeypatch, capsys):
    from engine.retrieval import builder

    dataset, vae, _, _, _ = built
    library = tmp_path / "library"
    assert main(["library", "build", "--data", str(dataset), "--vae", str(vae), "--out",
                 str(library), "--size", "3", "--device", "cpu", "--threads", "1"]) == 0
    catalogue = tmp_path / "catalogue"
    (catalogue / "nested").mkdir(parents=True)
    write_glb(catalogue / "stool.glb")
    write_glb(catalogue / "nested" / "bench.glb", seat_width=2.5)
    (catalogue / "broken.glb").write_bytes(b"glTF not really")
    (catalogue / "bad.obj").write_text("v 0 0 0\nf 1 2 3\n")
    (catalogue / "notes.txt").write_text("ignored: not a mesh file")
    renders = []
    real_render = builder.render_asset
    monkeypatch.setattr(builder, "render_asset",
                        lambda *a: renders.append(a[1].category) or real_render(*a))
    interrupted, real_write = [], builder.write_library

    def interrupt_the_rewrite(folder, records, *args):
        if Path(folder) == library and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return real_write(folder, records, *args)

    monkeypatch.setattr(builder, "write_library", interrupt_the_rewrite)
    command = ["library", "add", str(catalogue), "--library", str(library), "--device", "cpu"]
    with pytest.raises(KeyboardInterrupt):
        main(command)
    assert len(PartLibrary.load(library)) == 3  # nothing half-added
    assert sorted(renders) == ["bench", "stool"]
    assert main(command) == 0  # resumes: the two imported assets are not rendered again
    assert sorted(renders) == ["bench", "stool"]
    out = capsys.readouterr()
    assert "added 2 asset(s)" in out.out and "(2 skipped)" in out.out
    assert "skipped " + str(catalogue / "bad.obj") + ":" in out.err and "bad face" in out.err
    assert "skipped " + str(catalogue / "broken.glb") + ":" in out.err
    loaded = PartLibrary.load(library)
    assert len(loaded) == 5 and {a["category"] for a in loaded.assets[3:]} == {"stool", "bench"}
    assert not (library / builder.ADDING).exists()
    assert main(command) == 2  # nothing new: every file is skipped, each with its reason
    assert capsys.readouterr().err.count("already in the library") == 2


def test_an_interrupted_build_resumes_without_embedding_again(built, tmp_path, monkeypatch):
    from engine.retrieval import builder

    dataset, vae, folder, encoder, _ = built
    calls = []
    real_embed = builder.embed
    monkeypatch.setattr(builder, "embed", lambda *a: calls.append(1) or real_embed(*a))
    real_write = builder.write_library

    def fail_the_final_write(out, records, *args, **options):
        if Path(out) == tmp_path / "lib":
            raise KeyboardInterrupt
        return real_write(out, records, *args, **options)

    monkeypatch.setattr(builder, "write_library", fail_the_final_write)
    with pytest.raises(KeyboardInterrupt):
        build_library(dataset, tmp_path / "lib", [encoder], PartEncoder(vae), size=4,
                      progress=False)
    first = len(calls)
    assert first == len(SPLITS["train"])
    monkeypatch.setattr(builder, "write_library", real_write)
    build_library(dataset, tmp_path / "lib", [encoder], PartEncoder(vae), size=4,
                  progress=False)
    assert len(calls) == first  # every embedding came from the build's cache
    assert not (tmp_path / "lib" / builder.BUILDING).exists()
    again, reference = PartLibrary.load(tmp_path / "lib"), PartLibrary.load(folder)
    assert again.ids == reference.ids
    np.testing.assert_array_equal(again.arrays["latents"], reference.arrays["latents"])
    np.testing.assert_array_equal(again.embeddings("efficientnet-lite0", "part"),
                                  reference.embeddings("efficientnet-lite0", "part"))


def test_eval_retrieval_prints_the_table_latency_and_writes_the_sheet(built, tmp_path, capsys):
    dataset, _, folder, _, _ = built
    retriever = tmp_path / "hcr"
    HCR(HCRConfig(token_dim=1280, latent_dim=4, embed_dim=8, hidden_dim=16, part_queries=3,
                  attention_dim=8)).save_pretrained(retriever)
    sheet = tmp_path / "sheet.png"
    assert main(["eval", "retrieval", "--data", str(dataset), "--library", str(folder),
                 "--retriever", str(retriever), "--out", str(tmp_path / "out"), "--sheet",
                 str(sheet), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| efficientnet-lite0 |" in out and "| efficientnet-lite0 + HCR |" in out
    assert "top-3 among 10,000 assets" in out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["rows"][0]["queries"] == len(SPLITS["test"]) * 2
    assert 0.0 <= results["rows"][1]["maskfree_part_precision@5"] <= 1.0
    assert Image.open(sheet).size[0] > 4 * 128


def test_clip_embeddings_answer_text_queries(built, tmp_path):
    from test_retrieval_encoders import write_tiny_clip

    dataset, vae, _, encoder, _ = built
    clip = load_encoder(f"clip:{write_tiny_clip(tmp_path / 'clip')}")
    build_library(dataset, tmp_path / "library", [encoder, clip], PartEncoder(vae), size=3,
                  progress=False)
    library = PartLibrary.load(tmp_path / "library")
    assert library.encoders == ["efficientnet-lite0", clip.key]
    assert library.embeddings(clip.key, "part").shape == (library.num_parts, 16)
    hits = Searcher(library, encoder).by_text("chair leg", 2, text_encoder=clip)
    assert len(hits) == 2 and all(h.part is not None for h in hits)
    # The CLIP space is searchable by image too.
    rgba, _ = library.view(0, 0)
    assert Searcher(library, clip).by_image(rgba, 1)[0].asset_id == library.ids[0]
