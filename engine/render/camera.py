"""Pinhole cameras in the object canonical frame (+Y up, right-handed), pure numpy.

Convention (OpenCV): the extrinsic maps object-frame points to camera coordinates with x right,
y down, z forward (depth). Pixel coordinates are continuous and the top-left image corner is
(0, 0), so pixel (row r, column c) covers [c, c+1) x [r, r+1) and its centre is (c+0.5, r+0.5);
a principal point of (W/2, H/2) is the exact image centre. The renderer reproduces this
projection exactly, so masks and projected vertices line up pixel for pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Every canonical object lies in [-1, 1]^3, hence inside this sphere.
UNIT_CUBE_RADIUS = math.sqrt(3.0)


@dataclass(frozen=True)
class Camera:
    K: np.ndarray  # (3, 3) intrinsics in pixels
    extrinsic: np.ndarray  # (4, 4) object frame -> camera (OpenCV axes)
    width: int
    height: int

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        E = np.asarray(self.extrinsic, dtype=np.float64)
        if K.shape != (3, 3) or E.shape != (4, 4):
            raise ValueError(f"camera needs K (3, 3) and extrinsic (4, 4), got {K.shape} {E.shape}")
        if not math.isclose(K[0, 0], K[1, 1], rel_tol=1e-9) or K[0, 1] != 0:
            raise ValueError("only square pixels without skew are supported (fx == fy, no skew)")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "extrinsic", E)

    @property
    def centre(self) -> np.ndarray:
        """Camera position in the object frame."""
        R, t = self.extrinsic[:3, :3], self.extrinsic[:3, 3]
        return -R.T @ t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Object-frame points (N, 3) -> pixel coordinates (N, 2) as (u, v) and depth (N,)."""
        p = np.asarray(points, dtype=np.float64) @ self.extrinsic[:3, :3].T + self.extrinsic[:3, 3]
        depth = p[:, 2]
        uv = (p @ self.K.T)[:, :2] / depth[:, None]
        return uv, depth

    def resized(self, width: int, height: int) -> "Camera":
        """The same view at another resolution (intrinsics scale with the image)."""
        sx, sy = width / self.width, height / self.height
        if not math.isclose(sx, sy, rel_tol=1e-9):
            raise ValueError(f"{self.width}x{self.height} -> {width}x{height} changes the aspect")
        K = self.K.copy()
        K[:2] *= sx
        return Camera(K, self.extrinsic.copy(), width, height)


def look_at(eye: np.ndarray, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World->camera extrinsic (OpenCV axes) for a camera at `eye` looking at `target`."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("view direction is parallel to the up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    E = np.eye(4)
    E[:3, :3] = np.stack([x, y, z])
    E[:3, 3] = -E[:3, :3] @ eye
    return E


def framing_distance(fov_deg: float, radius: float = UNIT_CUBE_RADIUS,
                     margin: float = 0.05) -> float:
    """Distance at which a sphere of `radius` at the origin spans (1 - margin) of the view."""
    half = math.atan(math.tan(math.radians(fov_deg) / 2) * (1.0 - margin))
    return radius / math.sin(half)


def orbit(azimuth_deg: float, elevation_deg: float, distance: float, fov_deg: float,
          width: int = 256, height: int = 256) -> Camera:
    """Camera on a sphere around the origin, looking at it with +Y up.

    Azimuth 0 looks from +Z (the object's front) and grows towards +X; elevation is above the
    XZ plane. `fov_deg` spans the smaller image side.
    """
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    eye = distance * np.array([math.cos(el) * math.sin(az), math.sin(el),
                               math.cos(el) * math.cos(az)])
    f = 0.5 * min(width, height) / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return Camera(K, look_at(eye), width, height)


def orbit_views(n_views: int = 4, seed: int = 0, size: int = 256, fov_deg: float = 40.0,
                elevation_deg: tuple[float, float] = (5.0, 35.0), radius: float = UNIT_CUBE_RADIUS,
                margin: float = 0.05) -> list[Camera]:
    """`n_views` cameras spread around the object with jittered azimuth, deterministic in `seed`.

    Azimuths are evenly spaced from a random start, each jittered by up to a quarter of the
    spacing; elevations are uniform in `elevation_deg`. The distance keeps a sphere of `radius`
    (default: all of [-1, 1]^3) inside the frame with `margin` to spare.
    """
    if n_views < 1:
        raise ValueError("n_views must be >= 1")
    rng = np.random.default_rng(seed)
    step = 360.0 / n_views
    start = rng.uniform(0.0, 360.0)
    jitter = rng.uniform(-step / 4, step / 4, n_views)
    elevations = rng.uniform(*elevation_deg, n_views)
    distance = framing_distance(fov_deg, radius, margin)
    return [orbit((start + k * step + jitter[k]) % 360.0, elevations[k], distance, fov_deg,
                  size, size) for k in range(n_views)]


SHEET_AZIMUTH, SHEET_ELEVATION, SHEET_FOV = 35.0, 20.0, 40.0


def sheet_camera(size: int) -> Camera:
    """The three-quarter view of every preview and contact sheet, `size` pixels square."""
    return orbit(SHEET_AZIMUTH, SHEET_ELEVATION, framing_distance(SHEET_FOV), SHEET_FOV,
                 width=size, height=size)
