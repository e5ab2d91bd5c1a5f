"""Renderer tests: camera convention, mask/projection agreement, shading, worker lifecycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data.categories import generate_asset
from engine.render import (Camera, Renderer, RenderWorkerError, contact_sheet, mask_to_rgba,
                           orbit, orbit_views)
from engine.render.colours import BACKGROUND, decode_ids, id_codes, preview_colours, srgb_to_linear

ROOT = Path(__file__).resolve().parents[1]
SIZE = 128


@pytest.fixture(scope="module")
def renderer():
    with Renderer() as r:
        yield r


@pytest.fixture(scope="module")
def stool():
    return generate_asset("stool", 0)


@pytest.fixture(scope="module")
def views(renderer, stool):
    return renderer.render(stool, orbit_views(3, seed=0, size=SIZE), preview=True)


def reference_ids(asset, cam: Camera) -> np.ndarray:
    """Independent z-buffer of the part ids sampled at pixel centres (BACKGROUND = none)."""
    depth = np.full((cam.height, cam.width), np.inf)
    ids = np.full((cam.height, cam.width), BACKGROUND, np.uint8)
    for k, part in enumerate(asset.parts):
        uv, z = cam.project(part.object_vertices())
        for tri in part.faces:
            p, inv_z = uv[tri], 1.0 / z[tri]
            lo = np.maximum(np.floor(p.min(0) - 0.5).astype(int), 0)
            hi = np.minimum(np.ceil(p.max(0) - 0.5).astype(int), [cam.width - 1, cam.height - 1])
            e1, e2 = p[1] - p[0], p[2] - p[0]
            area = e1[0] * e2[1] - e2[0] * e1[1]
            if (hi < lo).any() or abs(area) < 1e-12:
                continue
            x, y = np.meshgrid(np.arange(lo[0], hi[0] + 1) + 0.5, np.arange(lo[1], hi[1] + 1) + 0.5)
            w1 = ((x - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[2, 0] - p[0, 0]) * (y - p[0, 1])) / area
            w2 = ((p[1, 0] - p[0, 0]) * (y - p[0, 1]) - (x - p[0, 0]) * (p[1, 1] - p[0, 1])) / area
            w0 = 1 - w1 - w2
            zz = 1.0 / (w0 * inv_z[0] + w1 * inv_z[1] + w2 * inv_z[2])  # 1/z is affine on screen
            win = np.s_[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]
            closer = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (zz < depth[win])
            depth[win][closer] = zz[closer]
            ids[win][closer] = k
    return ids


def grow(region: np.ndarray) -> np.ndarray:
    """region dilated by one pixel (8-neighbourhood)."""
    padded = np.pad(region, 1)
    h, w = region.shape
    return np.any([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def test_engine_does_not_import_bpy():
    code = "import sys, engine.render; assert 'bpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_orbit_camera_convention():
    cam = orbit(0.0, 0.0, 5.0, 40.0, SIZE, SIZE)
    np.testing.assert_allclose(cam.centre, [0, 0, 5], atol=1e-12)
    uv, depth = cam.project(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float))
    np.testing.assert_allclose(uv[0], [SIZE / 2, SIZE / 2])
    np.testing.assert_allclose(depth, [5, 5, 5])
    assert uv[1, 0] > SIZE / 2 and uv[2, 1] < SIZE / 2  # +X right, +Y up in the image
    top = orbit(90.0, 30.0, 5.0, 40.0)
    assert top.centre[0] > 0 and top.centre[1] > 0  # azimuth towards +X, elevation above


def test_orbit_views_deterministic_and_framed():
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    for seed in range(20):
        cams = orbit_views(4, seed=seed, size=SIZE)
        again = orbit_views(4, seed=seed, size=SIZE)
        assert all(np.array_equal(a.extrinsic, b.extrinsic) for a, b in zip(cams, again))
        for cam in cams:
            elevation = np.degrees(np.arcsin(cam.centre[1] / np.linalg.norm(cam.centre)))
            assert 5.0 <= elevation <= 35.0
            uv, depth = cam.project(corners)
            assert (depth > 0).all() and (uv > 0.02 * SIZE).all() and (uv < 0.98 * SIZE).all()
    assert not np.array_equal(orbit_views(4, seed=0)[0].extrinsic,
                              orbit_views(4, seed=1)[0].extrinsic)


def test_mask_matches_reference_rasterisation(views, stool):
    for view in views:
        ref = reference_ids(stool, view.camera)
        covered = (view.mask != BACKGROUND) | (ref != BACKGROUND)
        assert (view.mask == ref)[covered].mean() > 0.99
        assert set(np.unique(view.mask)) - {BACKGROUND} <= set(range(len(stool.parts)))


def test_mask_inside_projected_part_bbox(views, stool):
    for view in views:
        for k, part in enumerate(stool.parts):
            rows, cols = np.nonzero(view.mask == k)
            if not len(rows):
                continue
            uv, _ = view.camera.project(part.object_vertices())
            lo, hi = uv.min(0) - 1, uv.max(0) + 1
            assert (cols + 0.5 >= lo[0]).all() and (cols + 0.5 <= hi[0]).all()
            assert (rows + 0.5 >= lo[1]).all() and (rows + 0.5 <= hi[1]).all()


def test_alpha_agrees_with_mask(views):
    for view in views:
        fg, alpha = view.mask != BACKGROUND, view.rgba[..., 3]
        edge = grow(fg) & grow(~fg)
        assert (alpha[~fg & ~edge] == 0).all()
        assert (alpha[fg & ~edge] > 0).all()
        assert fg.mean() > 0.05  # the object is there and centred
        rows, cols = np.nonzero(fg)
        assert abs(rows.mean() - SIZE / 2) < SIZE / 4 and abs(cols.mean() - SIZE / 2) < SIZE / 4


def test_shading_shows_shape_with_material_colours(views, stool):
    part_material = np.array([p.material for p in stool.parts] + [0] * (256 - len(stool.parts)))
    for view in views:
        fg = view.mask != BACKGROUND
        interior = fg & ~grow(~fg)
        for m in np.unique(part_material[view.mask[interior]]):
            region = interior & (part_material[view.mask] == m)
            rgb = view.rgba[region][:, :3]
            assert len(np.unique(rgb, axis=0)) > 10 and rgb.mean(1).std() > 2.0  # not flat
            # Light scales the (linear) colour: its direction stays nearest its own material's.
            linear = srgb_to_linear(rgb / 255.0).mean(0)
            direction = linear / np.linalg.norm(linear)
            materials = stool.materials / np.linalg.norm(stool.materials, axis=1, keepdims=True)
            assert np.argmax(materials @ direction) == m


def test_preview_gives_each_part_its_palette_colour(views, stool):
    palette = srgb_to_linear(preview_colours(len(stool.parts)) / 255.0)
    palette /= np.linalg.norm(palette, axis=1, keepdims=True)
    for view in views:
        interior = (view.mask != BACKGROUND) & ~grow(view.mask == BACKGROUND)
        for k in np.unique(view.mask[interior]):
            mean = srgb_to_linear(view.preview[interior & (view.mask == k)][:, :3] / 255.0).mean(0)
            assert np.argmax(palette @ (mean / np.linalg.norm(mean))) == k


def test_deterministic_and_no_leaks(renderer, stool, views):
    again = renderer.render(stool, [v.camera for v in views], preview=True)
    for a, b in zip(views, again):
        assert np.array_equal(a.rgba, b.rgba) and np.array_equal(a.mask, b.mask)
        assert np.array_equal(a.preview, b.preview)
    counts = renderer.datablocks
    renderer.render(generate_asset("stool", 1), orbit_views(1, size=32))
    assert renderer.datablocks == counts == {"objects": 1, "meshes": 0}  # only the camera stays


def test_size_is_configurable(renderer, stool, views):
    small = renderer.render(stool, [v.camera for v in views], size=48)
    for view, big in zip(small, views):
        assert view.rgba.shape == (48, 48, 4) and view.mask.shape == (48, 48)
        assert view.camera.width == 48 and view.preview is None
        np.testing.assert_allclose(view.camera.K[:2] * SIZE / 48, big.camera.K[:2])
    wide = replace(views[0].camera, width=SIZE + 32)
    assert renderer.render(stool, [wide])[0].rgba.shape == (SIZE, SIZE + 32, 4)


def test_malformed_mesh_is_rejected_before_blender(renderer, stool):
    asset = generate_asset("stool", 0)
    asset.parts[0] = replace(asset.parts[0], faces=asset.parts[0].faces + 1000)
    with pytest.raises(ValueError, match="out of range"):
        renderer.render(asset, orbit_views(1, size=32))
    assert renderer.render(stool, orbit_views(1, size=32))  # worker unharmed


def test_failed_job_reports_worker_traceback(renderer, stool):
    with pytest.raises(RenderWorkerError, match="(?s)job failed.*No such file"):
        renderer._request("/nonexistent/job.npz")
    assert renderer.render(stool, orbit_views(1, size=32))


def test_worker_death_is_a_clear_error(stool):
    r = Renderer()
    os.kill(r.pid, signal.SIGKILL)
    with pytest.raises(RenderWorkerError, match=r"died \(exit code -9\)"):
        r.render(stool, orbit_views(1, size=32))
    with pytest.raises(RenderWorkerError, match="closed"):
        r.render(stool, orbit_views(1, size=32))


def test_worker_start_failure_shows_its_output(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no bpy in this interpreter' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RenderWorkerError, match=r"(?s)exit code 3.*no bpy in this interpreter"):
        Renderer(python=str(fake))


def test_decode_ids_is_exact_and_strict():
    codes = id_codes(255)
    assert len(np.unique(codes, axis=0)) == 255
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (64, 64)).astype(np.uint8)  # 255 = background
    rgba = np.zeros((64, 64, 4), np.uint8)
    fg = truth != BACKGROUND
    noise = rng.integers(-2, 3, (fg.sum(), 3))  # quantisation slack, well under the tolerance
    rgba[fg, :3] = np.clip(codes[truth[fg]].astype(int) + noise, 0, 255)
    rgba[fg, 3] = 255
    assert np.array_equal(decode_ids(rgba, 255), truth)
    blended = rgba.copy()
    blended[0, 0, 3] = 128
    with pytest.raises(ValueError, match="transparent"):
        decode_ids(blended, 255)
    shaded = rgba.copy()
    shaded[fg.nonzero()[0][0], fg.nonzero()[1][0], :3] = 35  # between two levels
    with pytest.raises(ValueError, match="off by"):
        decode_ids(shaded, 255)


def test_contact_sheet(tmp_path, views):
    images = [v.rgba for v in views] + [mask_to_rgba(views[0].mask)]
    path = tmp_path / "sheet.png"
    contact_sheet(images, path, [f"stool {i}" for i in range(4)], columns=2, tile=64)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[:2] == (2 * (64 + 4 + 14) + 4, 2 * (64 + 4) + 4)
    assert sheet.min() < 100 and sheet[0, 0].tolist() == [240, 240, 240]
    assert os.listdir(tmp_path) == ["sheet.png"]  # no temp file left behind
