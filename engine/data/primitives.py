"""Closed, outward-oriented triangle meshes built from simple shapes.

Every constructor returns a watertight `Mesh` (each edge shared by exactly two faces, normals
pointing out), so parts assembled from them can be voxelised, sampled and fed to SDF-based
VAEs without repair. Shapes are centred at the origin; Y is the lathe/extrusion axis where
one is needed, matching the +Y-up object frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int32

    def transformed(self, matrix: np.ndarray) -> "Mesh":
        """Apply a 3x3 linear map or a 4x4 affine map (row-vector convention: v' = M v)."""
        m = np.asarray(matrix, dtype=np.float64)
        linear, offset = (m[:3, :3], m[:3, 3]) if m.shape == (4, 4) else (m, np.zeros(3))
        faces = self.faces if np.linalg.det(linear) > 0 else self.faces[:, ::-1].copy()
        return Mesh(self.vertices @ linear.T + offset, faces)

    def translated(self, offset) -> "Mesh":
        return Mesh(self.vertices + np.asarray(offset, dtype=np.float64), self.faces)

    def scaled(self, factors) -> "Mesh":
        return self.transformed(np.diag(np.broadcast_to(np.asarray(factors, float), (3,))))

    def rotated(self, axis: str, angle: float) -> "Mesh":
        return self.transformed(rotation(axis, angle))

    @property
    def bounds(self) -> np.ndarray:
        return np.stack([self.vertices.min(0), self.vertices.max(0)])


def rotation(axis: str, angle: float) -> np.ndarray:
    """3x3 right-handed rotation about a principal axis."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def merge(meshes: list[Mesh]) -> Mesh:
    """Concatenate meshes into one (each component stays closed)."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]).astype(np.int32),
    )


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _outward(vertices: np.ndarray, faces) -> Mesh:
    """Faces are built with consistent winding; flip them all if that winding points inward."""
    faces = np.asarray(faces, dtype=np.int32).reshape(-1, 3)
    if signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    return Mesh(np.asarray(vertices, dtype=np.float64), faces)


def _ring_strip(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Quads between two equal-length closed vertex rings, as triangles."""
    a1, b1 = np.roll(a, -1), np.roll(b, -1)
    return np.concatenate([np.stack([a, a1, b1], 1), np.stack([a, b1, b], 1)])


def _fan(centre: int, ring: np.ndarray) -> np.ndarray:
    return np.stack([np.full_like(ring, centre), np.roll(ring, -1), ring], 1)


def box(size) -> Mesh:
    sx, sy, sz = np.asarray(size, dtype=np.float64) / 2
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)])
    f = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    return _outward(v, f)


def lathe(profile, segments: int = 32) -> Mesh:
    """Revolve a (radius, y) polyline about the Y axis.

    The profile must start and end on the axis (radius 0) so the surface closes at two poles;
    a hollow vessel is described by going up the outside and back down the inside.
    """
    p = np.asarray(profile, dtype=np.float64)
    if p[0, 0] != 0 or p[-1, 0] != 0 or np.any(p[1:-1, 0] <= 0):
        raise ValueError("lathe profile must start and end at radius 0 and stay positive between")
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    rings = p[1:-1]
    ring_v = np.stack([rings[:, :1] * np.cos(theta), np.repeat(rings[:, 1:], segments, 1),
                       rings[:, :1] * np.sin(theta)], -1).reshape(-1, 3)
    n_rings = len(rings)
    v = np.concatenate([[[0, p[0, 1], 0]], ring_v, [[0, p[-1, 1], 0]]])
    ring_idx = 1 + np.arange(n_rings * segments).reshape(n_rings, segments)
    faces = [_fan(0, ring_idx[0])]
    faces += [_ring_strip(ring_idx[k], ring_idx[k + 1]) for k in range(n_rings - 1)]
    faces.append(_fan(len(v) - 1, ring_idx[-1])[:, ::-1])
    return _outward(v, np.concatenate(faces))


def cylinder(radius: float, height: float, segments: int = 32, radius_top: float | None = None) -> Mesh:
    """Cylinder or frustum along Y, centred at the origin."""
    r1 = radius if radius_top is None else radius_top
    h = height / 2
    return lathe([(0, -h), (radius, -h), (r1, h), (0, h)], segments)


def sphere(radius: float, segments: int = 24) -> Mesh:
    phi = np.linspace(-np.pi / 2, np.pi / 2, segments // 2 + 1)
    prof = np.stack([radius * np.cos(phi), radius * np.sin(phi)], 1)
    prof[0, 0] = prof[-1, 0] = 0.0
    return lathe(prof, segments)


def _frames(path: np.ndarray, closed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Parallel-transport normal/binormal frames along a polyline (no twisting)."""
    if closed:
        tangents = np.roll(path, -1, 0) - np.roll(path, 1, 0)
    else:
        tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    seed = np.eye(3)[np.argmin(np.abs(tangents[0]))]
    normal = np.cross(tangents[0], seed)
    normal /= np.linalg.norm(normal)
    normals = [normal]
    for t in tangents[1:]:
        normal = normal - t * np.dot(normal, t)
        normal /= np.linalg.norm(normal)
        normals.append(normal)
    normals = np.array(normals)
    return normals, np.cross(tangents, normals)


def tube(path, radius: float, segments: int = 12, closed: bool = False) -> Mesh:
    """Circular tube swept along a polyline: rods, wire handles, rings (closed=True)."""
    path = np.asarray(path, dtype=np.float64)
    normals, binormals = _frames(path, closed)
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring_v = (path[:, None] + radius * (np.cos(theta)[None, :, None] * normals[:, None]
                                        + np.sin(theta)[None, :, None] * binormals[:, None]))
    v = ring_v.reshape(-1, 3)
    idx = np.arange(len(v)).reshape(len(path), segments)
    faces = [_ring_strip(idx[k], idx[k + 1]) for k in range(len(path) - 1)]
    if closed:
        faces.append(_ring_strip(idx[-1], idx[0]))
    else:
        v = np.concatenate([v, path[[0, -1]]])
        faces += [_fan(len(v) - 2, idx[0]), _fan(len(v) - 1, idx[-1])[:, ::-1]]
    return _outward(v, np.concatenate(faces))


def torus(major: float, minor: float, segments: int = 32, minor_segments: int = 12) -> Mesh:
    """Ring in the XZ plane around the Y axis."""
    t = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    return tube(np.stack([major * np.cos(t), np.zeros_like(t), major * np.sin(t)], 1),
                minor, minor_segments, closed=True)


def arc(radius: float, start: float, stop: float, count: int = 16) -> np.ndarray:
    """Points on a circular arc in the XY plane (for handles and bent rods)."""
    t = np.linspace(start, stop, count)
    return np.stack([radius * np.cos(t), radius * np.sin(t), np.zeros_like(t)], 1)


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def triangulate_polygon(poly) -> np.ndarray:
    """Ear-clipping triangulation of a simple polygon given counter-clockwise."""
    poly = np.asarray(poly, dtype=np.float64)
    remaining = list(range(len(poly)))
    tris = []

    def is_ear(i_prev, i, i_next) -> bool:
        a, b, c = poly[i_prev], poly[i], poly[i_next]
        if (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) <= 1e-12:
            return False
        for j in remaining:
            if j in (i_prev, i, i_next):
                continue
            p = poly[j]
            d1 = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
            d2 = (c[0] - b[0]) * (p[1] - b[1]) - (c[1] - b[1]) * (p[0] - b[0])
            d3 = (a[0] - c[0]) * (p[1] - c[1]) - (a[1] - c[1]) * (p[0] - c[0])
            if d1 >= 0 and d2 >= 0 and d3 >= 0:
                return False
        return True

    while len(remaining) > 3:
        n = len(remaining)
        for k in range(n):
            i_prev, i, i_next = remaining[k - 1], remaining[k], remaining[(k + 1) % n]
            if is_ear(i_prev, i, i_next):
                tris.append((i_prev, i, i_next))
                remaining.pop(k)
                break
        else:
            raise ValueError("polygon is not simple: no ear found")
    tris.append(tuple(remaining))
    return np.array(tris, dtype=np.int32)


def extrude(polygon, depth: float) -> Mesh:
    """Prism from a simple XY polygon, extruded symmetrically along Z."""
    poly = np.asarray(polygon, dtype=np.float64)
    if _polygon_area(poly) < 0:
        poly = poly[::-1]
    n = len(poly)
    tris = triangulate_polygon(poly)
    d = depth / 2
    v = np.concatenate([np.c_[poly, np.full(n, -d)], np.c_[poly, np.full(n, d)]])
    ring = np.arange(n)
    faces = np.concatenate([tris[:, ::-1], tris + n, _ring_strip(ring, ring + n)])
    return _outward(v, faces)


def rounded_box(size, radius: float, subdivisions: int = 6) -> Mesh:
    """Box with rounded edges and corners (cushions, mattresses, car bodies)."""
    half = np.asarray(size, dtype=np.float64) / 2
    radius = float(min(radius, half.min() * 0.999))
    g = np.linspace(-1, 1, subdivisions + 1)
    u, w = np.meshgrid(g, g, indexing="ij")
    grid = np.stack([u.ravel(), w.ravel()], 1)
    quads = np.array([[i * (subdivisions + 1) + j, (i + 1) * (subdivisions + 1) + j,
                       (i + 1) * (subdivisions + 1) + j + 1, i * (subdivisions + 1) + j + 1]
                      for i in range(subdivisions) for j in range(subdivisions)])
    verts, faces = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            face_v = np.insert(grid, axis, sign, axis=1)
            a, b = [k for k in range(3) if k != axis]
            # Keep the winding outward: (a, b, axis) must be right-handed times the sign.
            order = quads if sign * (1 if (a, b) in ((0, 1), (1, 2), (2, 0)) else -1) > 0 else quads[:, ::-1]
            base = sum(len(x) for x in verts)
            verts.append(face_v)
            faces.append(np.concatenate([order[:, [0, 1, 2]], order[:, [0, 2, 3]]]) + base)
    v = np.concatenate(verts)
    f = np.concatenate(faces)
    key = np.round(v * subdivisions).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    v, f = v[first], inverse.reshape(-1)[f]
    p = v * half
    inner = half - radius
    core = np.clip(p, -inner, inner)
    d = p - core
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    p = core + radius * d / np.maximum(norm, 1e-12)
    return _outward(p, f)
