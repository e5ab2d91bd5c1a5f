"""The demo's last step: parts -> a .blend built by the add-on's scene code plus a Workbench
render, in a bpy subprocess (engine/render/blend.py)."""

import bpy
import numpy as np
import pytest
from PIL import Image

from bridge.protocol import Part
from engine.data.primitives import box
from engine.render import RenderWorkerError
from engine.render.blend import write_blend


def at(x, y, z):
    transform = np.eye(4)
    transform[:3, 3] = (x, y, z)
    return transform


def synthetic_parts():
    """A seat and two legs that share one mesh (linked duplicates)."""
    seat, leg = box((1.6, 0.2, 1.6)), box((0.2, 1.0, 0.2))
    return [Part(seat.vertices.astype(np.float32), seat.faces.astype(np.int32), at(0, 0.2, 0),
                 "chair_seat", 0, "seat"),
            Part(leg.vertices.astype(np.float32), leg.faces.astype(np.int32), at(-0.6, -0.4, 0),
                 "chair_leg", 1, "leg"),
            Part(leg.vertices.astype(np.float32), leg.faces.astype(np.int32), at(0.6, -0.4, 0),
                 "chair_leg", 2, "leg")]


def test_parts_become_a_blend_and_a_render(tmp_path):
    blend, render = tmp_path / "asset.blend", tmp_path / "asset.png"
    summary = write_blend(synthetic_parts(), blend, render, asset_id="demo-test",
                          parameters={"seed": 0}, retrieved=[{"asset_id": "lib7", "score": 0.5}],
                          size=96)
    assert summary["parts"] == ["chair_seat", "chair_leg", "chair_leg.001"]
    assert summary["meshes"] == 2 and summary["materials"] == 3  # legs share their mesh
    image = np.asarray(Image.open(render))
    assert image.shape == (96, 96, 4)
    shown = image[image[..., 3] == 255, :3]
    assert len(shown) > 500 and len(np.unique(shown // 32, axis=0)) >= 3  # parts in colour
    with bpy.data.libraries.load(str(blend)) as (stored, _):
        assert sorted(stored.objects) == ["camera", "chair_leg", "chair_leg.001", "chair_seat",
                                          summary["root"]]
        assert len(stored.meshes) == 2


def test_a_failing_worker_is_reported_with_its_output(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no bpy in this interpreter' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RenderWorkerError, match=r"(?s)exit code 3.*no bpy in this interpreter"):
        write_blend(synthetic_parts(), tmp_path / "a.blend", tmp_path / "a.png", asset_id="x",
                    parameters={}, python=str(fake))
    assert not (tmp_path / "a.blend").exists()
