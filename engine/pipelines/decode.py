"""Generated part latents -> part meshes as DESIGN.md wants them: each part's mesh in its
local frame (origin at its bounding-box centre, object axes and scale) plus a rigid
local -> object transform, and one mesh id (and one set of arrays) for near-identical parts.
By default each mesh is cleaned up for an artist (engine/geometry/cleanup.py): debris and
cavity walls dropped, closed and at most `max_faces` triangles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from pykdtree.kdtree import KDTree

from bridge.protocol import Part

from engine.geometry.metrics import sample_surface
from engine.geometry.cleanup import CleanMesh, clean_part
from engine.geometry.extraction import DEFAULT_BOUNDS, PART_LIPSCHITZ, ExtractedMesh, extract_part
from engine.geometry.pieces import debris_share, piece_areas
from engine.models.vecset_vae import VecSetVAE

SAME_MESH_TOLERANCE = 0.01  # two local meshes closer than this (symmetric mean distance) are one
SAME_MESH_SAMPLES = 2048
DEFAULT_MAX_FACES = 20_000  # per part: light in Blender; at 128^3 the surface moves << a cell
PLACEHOLDER_GRID = 16  # where to put a placeholder for a part whose field has no surface
BOX_FACE_TOLERANCE = 1e-5  # float32 grid points on the box's faces, far below any cell


@dataclass
class ExtractSettings:
    resolution: int = 128  # about 0.4 s per part on two CPU threads with the shipped VAE
    coarse_resolution: int = 32
    lipschitz: float = PART_LIPSCHITZ
    max_faces: int | None = DEFAULT_MAX_FACES  # per cleaned part; None: full resolution
    clean: bool = True  # False: marching cubes' mesh as it is, to measure what the model makes


@dataclass
class PartMesh:
    vertices: np.ndarray  # (V, 3) float32, local frame
    faces: np.ndarray  # (F, 3) int32
    transform: np.ndarray  # (4, 4) float64, local -> object
    mesh_id: int
    empty: bool  # the field had no surface: a placeholder cube marks where it was lowest
    pieces: int  # connected pieces of the mesh
    debris_removed: float  # share of the raw mesh's area the clean-up dropped
    raw_debris: float  # the raw mesh's share of area in pieces below 2 % of the part

    def as_part(self, label: str, index: int, latent: np.ndarray | None = None) -> Part:
        return Part(self.vertices, self.faces, self.transform, label, index,
                    f"mesh{self.mesh_id}", latent=latent)

    def report(self) -> dict:
        """What parts.json and the eval say of the mesh beyond its geometry."""
        return {"empty": self.empty, "pieces": self.pieces,
                "debris_removed": self.debris_removed, "raw_debris": self.raw_debris}


def placeholder_cube(field, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """A small cube (one coarse cell) at the field's lowest point on a coarse grid, so a
    part with no surface still comes back as a valid, visible mesh."""
    axis = torch.linspace(-1.0, 1.0, PLACEHOLDER_GRID, device=device)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    centre = points[field(points).argmin()].cpu().numpy().astype(np.float64)
    half = 1.0 / PLACEHOLDER_GRID
    corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return centre + half * corners, faces


def closed_at_box(field, bounds: float = DEFAULT_BOUNDS):
    """The field, but outside on the faces of the extraction box, so that a part reaching
    the box is closed about half a cell inside it instead of cut open there (|value| puts
    the crossing about halfway to the grid points next to the face)."""
    def closed(points: torch.Tensor) -> torch.Tensor:
        values = field(points)
        on_face = (points.abs() >= bounds - BOX_FACE_TOLERANCE).any(1)
        return torch.where(on_face, values.abs(), values)
    return closed


def part_surface(mesh: ExtractedMesh, settings: ExtractSettings) -> CleanMesh:
    """The part's mesh as the settings ask: cleaned up, or marching cubes' own."""
    if settings.clean:
        return clean_part(mesh.vertices, mesh.faces, settings.max_faces)
    return CleanMesh(mesh.vertices, mesh.faces, len(piece_areas(mesh.vertices, mesh.faces)[1]), 0.0,
                     debris_share(mesh.vertices, mesh.faces))


def to_local(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object-frame vertices -> (local float32 vertices, translation transform)."""
    vertices = np.asarray(vertices, np.float64)
    centre = (vertices.min(0) + vertices.max(0)) / 2
    transform = np.eye(4)
    transform[:3, 3] = centre
    return (vertices - centre).astype(np.float32), transform


def same_geometry(a: PartMesh, b: PartMesh, rng: np.random.Generator) -> bool:
    """Symmetric mean nearest distance between the two local surfaces below tolerance."""
    extent_a = a.vertices.max(0) - a.vertices.min(0)
    extent_b = b.vertices.max(0) - b.vertices.min(0)
    if np.abs(extent_a - extent_b).max() > 2 * SAME_MESH_TOLERANCE:
        return False
    pa = sample_surface(a.vertices, a.faces, SAME_MESH_SAMPLES, rng).points
    pb = sample_surface(b.vertices, b.faces, SAME_MESH_SAMPLES, rng).points
    d_ab, _ = KDTree(pb).query(pa, k=1)
    d_ba, _ = KDTree(pa).query(pb, k=1)
    return 0.5 * (d_ab.mean() + d_ba.mean()) < SAME_MESH_TOLERANCE


def share_meshes(parts: list[PartMesh], seed: int = 0) -> None:
    """Give near-identical parts the first one's mesh id and arrays (linked duplicates).
    Mesh ids start as part positions; a part still holding its own is a candidate twin."""
    rng = np.random.default_rng(seed)
    for i, part in enumerate(parts):
        if part.empty:
            continue
        twin = next((lead for j, lead in enumerate(parts[:i]) if lead.mesh_id == j
                     and not lead.empty and same_geometry(lead, part, rng)), None)
        if twin is not None:
            part.mesh_id, part.vertices, part.faces = twin.mesh_id, twin.vertices, twin.faces
            part.pieces = twin.pieces


@torch.no_grad()
def decode_parts(vae: VecSetVAE, latents: torch.Tensor, settings: ExtractSettings,
                 progress: Callable[[float], None] | None = None,
                 check_cancelled: Callable[[], None] | None = None) -> list[PartMesh]:
    """latents (parts, T, C) in the object frame -> one PartMesh per part, in order."""
    device = latents.device
    parts = []
    for i in range(len(latents)):
        if check_cancelled is not None:
            check_cancelled()
        field = vae.field(latents[i:i + 1])  # latent self-attention once per part
        if settings.clean:
            field = closed_at_box(field)
        mesh = extract_part(field, settings.resolution, settings.coarse_resolution,
                            settings.lipschitz, device)
        empty = len(mesh.faces) == 0
        surface = (CleanMesh(*placeholder_cube(field, device), pieces=1, debris_removed=0.0,
                             raw_debris=0.0)
                   if empty else part_surface(mesh, settings))
        local, transform = to_local(surface.vertices)
        parts.append(PartMesh(local, np.ascontiguousarray(surface.faces, dtype=np.int32),
                              transform, i, empty, surface.pieces, surface.debris_removed,
                              surface.raw_debris))
        if progress is not None:
            progress((i + 1) / len(latents))
    share_meshes(parts)
    return parts
