"""Test geometry shared by the add-on tests and their engine pipeline (no bpy here)."""

import numpy as np


def grid_mesh(side: int):
    """A valid wavy side x side grid: side² vertices, 2 (side-1)² triangles."""
    u = np.linspace(-1.0, 1.0, side, dtype=np.float32)
    x, z = np.meshgrid(u, u)
    vertices = np.stack([x.ravel(), 0.1 * np.sin(3 * x.ravel()), z.ravel()], 1)
    ids = np.arange(side * side).reshape(side, side)
    a, b, c, d = (ids[:-1, :-1].ravel(), ids[:-1, 1:].ravel(), ids[1:, 1:].ravel(),
                  ids[1:, :-1].ravel())
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices.astype(np.float32), faces.astype(np.int32)
