"""Surface extraction from an implicit field: dense or near-surface (hierarchical) marching cubes.

A field is any callable taking float32 points (N, 3) to values (N,) whose zero level set is the
surface, negative inside and positive outside: an SDF, or the VecSet decoder's negated
occupancy logits. A grid of `resolution` spans [-bounds, bounds]^3 with `resolution` cells,
so `resolution + 1` points, per axis; grid values stay on the field's device and only the
part of the grid the surface crosses goes to marching cubes on the CPU.

The hierarchical extractor evaluates a dense coarse grid, then at each doubling of the
resolution queries only the cells that may hold surface (see `near_surface_cells`). Points it
never queried take trilinear values from the coarser level, which keep the sign of the coarse
cell they lie in; before marching cubes, every cell the surface crosses gets all its corners
queried, so the mesh equals the dense one wherever the band found the surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import fast_simplification
import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import marching_cubes

from engine.device import Stopwatch

Field = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[float], None]

DEFAULT_BOUNDS = 1.005  # the reference's extraction box: the object frame's [-1, 1]^3 plus a margin
DEFAULT_CHUNK = 65_536
CORNER_OFFSETS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


@dataclass(frozen=True)
class ExtractedMesh:
    vertices: np.ndarray  # (V, 3) float32, object frame
    faces: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside (normals outward)
    queried_points: int  # field evaluations spent
    seconds: dict[str, float]  # wall time per stage
    lowest: float  # the field's minimum on the dense (coarse) grid
    level: float = 0.0  # the field value the surface was extracted at (see extract_part)


def flat_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Flat indices (N,) of point indices (N, 3) on a size^3 grid, x slowest."""
    return (index[:, 0] * size + index[:, 1]) * size + index[:, 2]


def unflatten(flat: torch.Tensor, size: int) -> torch.Tensor:
    """Point indices (N, 3) of flat indices (N,) on a size^3 grid."""
    return torch.stack((flat // (size * size), flat // size % size, flat % size), dim=1)


@dataclass(frozen=True)
class Grid:
    """`resolution` cells per axis over [-bounds, bounds]^3; points are addressed by flat index."""
    resolution: int
    bounds: float

    @property
    def size(self) -> int:
        return self.resolution + 1

    @property
    def cell(self) -> float:
        return 2 * self.bounds / self.resolution

    def points(self, flat: torch.Tensor) -> torch.Tensor:
        """Coordinates (N, 3) float32 of flat point indices. Doubling the resolution scales
        the cell by an exact power of two, so a point shared by two levels gets the same
        coordinates, and the same value, on both."""
        return unflatten(flat, self.size).to(torch.float32) * self.cell - self.bounds


def field_device(field: Field) -> torch.device:
    """Where a field's tensors live: its first parameter or buffer if it is a module, else CPU.
    Pass `device` to the extractors for fields that wrap a module (lambdas, bound methods)."""
    if isinstance(field, torch.nn.Module):
        for tensor in (*field.parameters(), *field.buffers()):
            return tensor.device
    return torch.device("cpu")


def progress_span(progress: Progress | None, start: float, stop: float) -> Progress:
    """A callback for one stage that maps its own 0..1 onto [start, stop] of the whole run."""
    if progress is None:
        return lambda fraction: None
    return lambda fraction: progress(start + (stop - start) * fraction)


def evaluate(field: Field, grid: Grid, flat: torch.Tensor, chunk: int,
             progress: Progress) -> torch.Tensor:
    """Field values (N,) float32 at flat grid indices, `chunk` points per call, reporting
    progress after each chunk (the caller's cancellation point)."""
    values = torch.empty(len(flat), dtype=torch.float32, device=flat.device)
    for start in range(0, len(flat), chunk):
        stop = min(start + chunk, len(flat))
        values[start:stop] = field(grid.points(flat[start:stop])).reshape(-1)
        progress(stop / len(flat))
    return values


def query_into(values: torch.Tensor, queried: torch.Tensor, flat: torch.Tensor, field: Field,
               grid: Grid, chunk: int, progress: Progress) -> int:
    """Query the field at flat indices, store the values and mark them queried; returns how many."""
    values.view(-1)[flat] = evaluate(field, grid, flat, chunk, progress)
    queried.view(-1)[flat] = True
    return len(flat)


def any_corner(points: torch.Tensor) -> torch.Tensor:
    """Cells (n-1)^3 with at least one of their 8 corners set in a boolean point mask n^3.
    One axis at a time on booleans: ~5x faster than min/max pooling the values on the CPU."""
    for axis in range(3):
        n = points.shape[axis] - 1
        points = points.narrow(axis, 0, n) | points.narrow(axis, 1, n)
    return points


def cells_reaching(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Cells whose corner values span a range that meets [low, high]."""
    return any_corner(values <= high) & any_corner(values >= low)


def crossing_cells(values: torch.Tensor) -> torch.Tensor:
    """Cells whose corners reach both signs (or zero): where marching cubes puts triangles."""
    return cells_reaching(values, 0.0, 0.0)


def near_surface_cells(values: torch.Tensor, cell: float, lipschitz: float) -> torch.Tensor:
    """Cells that may hold surface: their corner values come within `band` of zero.

    A surface point inside a cell is at most half a cell diagonal from its nearest corner, so
    for a field changing by at most `lipschitz` per unit length that corner's |value| is at
    most band = lipschitz * cell * sqrt(3) / 2: cells a thin part passes through are kept even
    when no corner lies inside it.
    """
    band = lipschitz * cell * math.sqrt(3) / 2
    return cells_reaching(values, -band, band)


def dilate(cells: torch.Tensor) -> torch.Tensor:
    """Grow a boolean cell mask by one cell in all 26 directions (margin for what the coarse
    values got wrong)."""
    for axis in range(3):
        n = cells.shape[axis] - 1
        grown = cells.clone()
        grown.narrow(axis, 1, n).logical_or_(cells.narrow(axis, 0, n))
        grown.narrow(axis, 0, n).logical_or_(cells.narrow(axis, 1, n))
        cells = grown
    return cells


def points_of_split_cells(cells: torch.Tensor) -> torch.Tensor:
    """Points of the doubled grid covered by the given cells: cell i spans points 2i..2i+2."""
    for axis in range(3):
        n = cells.shape[axis]
        shape = list(cells.shape)
        shape[axis] = 2 * n + 1
        points = torch.zeros(shape, dtype=torch.bool, device=cells.device)
        index = [slice(None)] * 3
        for offset in range(3):
            index[axis] = slice(offset, offset + 2 * n, 2)
            points[tuple(index)] |= cells
        cells = points
    return cells


def upsample(values: torch.Tensor, queried: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and queried-mask on the doubled grid: shared points keep their values exactly,
    new ones are trilinear (the sign of the coarse cell they lie in when it has one sign)."""
    size = (2 * values.shape[0] - 1,) * 3
    finer = F.interpolate(values[None, None], size=size, mode="trilinear", align_corners=True)[0, 0]
    finer_queried = torch.zeros(size, dtype=torch.bool, device=queried.device)
    finer_queried[::2, ::2, ::2] = queried
    return finer, finer_queried


def cell_corners(cells: torch.Tensor) -> torch.Tensor:
    """Points (n+1)^3 that are corners of any of the given cells (n^3)."""
    for axis in range(3):
        n = cells.shape[axis]
        shape = list(cells.shape)
        shape[axis] = n + 1
        points = torch.zeros(shape, dtype=torch.bool, device=cells.device)
        points.narrow(axis, 0, n).logical_or_(cells)
        points.narrow(axis, 1, n).logical_or_(cells)
        cells = points
    return cells


def crossing_cells_touching(points: torch.Tensor, values: torch.Tensor,
                            grid: Grid) -> torch.Tensor:
    """Cell indices (K, 3) of the cells that have one of the given flat points as a corner and
    that the surface crosses."""
    offsets = CORNER_OFFSETS.to(values.device)
    cells = (unflatten(points, grid.size)[:, None] - offsets).reshape(-1, 3)
    cells = torch.unique(cells[((cells >= 0) & (cells < grid.resolution)).all(1)], dim=0)
    corners = flat_index((cells[:, None] + offsets).reshape(-1, 3), grid.size)
    corner_values = values.view(-1)[corners].view(-1, 8)
    return cells[(corner_values.min(1).values <= 0) & (corner_values.max(1).values >= 0)]


def complete_crossing_cells(values: torch.Tensor, queried: torch.Tensor, field: Field,
                            grid: Grid, chunk: int, progress: Progress) -> int:
    """Query every missing corner of the cells the surface crosses, following the surface
    into the cells that new values make cross, so marching cubes sees only queried values
    where it puts triangles. Returns the number of points queried."""
    offsets = CORNER_OFFSETS.to(values.device)
    missing = (cell_corners(crossing_cells(values)) & ~queried).view(-1).nonzero()[:, 0]
    total = 0
    while len(missing):
        total += query_into(values, queried, missing, field, grid, chunk, progress)
        cells = crossing_cells_touching(missing, values, grid)
        corners = torch.unique(flat_index((cells[:, None] + offsets).reshape(-1, 3), grid.size))
        missing = corners[~queried.view(-1)[corners]]
    return total


def surface_from_grid(values: torch.Tensor, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at level 0 on the part of the grid the surface crosses; outward faces.
    Empty arrays when the field has one sign over the whole grid."""
    cells = crossing_cells(values).nonzero()
    if not len(cells):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    low = cells.min(0).values.tolist()
    high = (cells.max(0).values + 2).tolist()  # cell i spans points i..i+1
    crop = values[low[0]:high[0], low[1]:high[1], low[2]:high[2]].cpu().numpy()
    # skimage's default winding gives normals pointing from negative to positive values.
    vertices, faces, _, _ = marching_cubes(crop, 0.0)
    vertices = (vertices + low) * grid.cell - grid.bounds
    return vertices.astype(np.float32), faces.astype(np.int32)


def decimate(vertices: np.ndarray, faces: np.ndarray,
             max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge collapse down to at most `max_faces` triangles; meshes within the budget
    come back unchanged. Orientation is kept."""
    if len(faces) <= max_faces:
        return vertices, faces
    vertices, faces = fast_simplification.simplify(vertices, faces, target_count=max_faces)
    return vertices.astype(np.float32), faces.astype(np.int32)


def finish(values: torch.Tensor, grid: Grid, queried_points: int, lowest: float,
           watch: Stopwatch, max_faces: int | None, progress: Progress | None) -> ExtractedMesh:
    """Marching cubes, the optional face budget, and the stats: the common end of extraction."""
    with watch.stage("marching cubes"):
        vertices, faces = surface_from_grid(values, grid)
    if max_faces is not None:
        with watch.stage("decimate"):
            vertices, faces = decimate(vertices, faces, max_faces)
    if progress is not None:
        progress(1.0)
    return ExtractedMesh(vertices, faces, queried_points, watch.seconds, lowest)


QUERY_SHARE = 0.9  # of the progress range; marching cubes and decimation take the rest


@torch.no_grad()
def extract_dense(field: Field, resolution: int, bounds: float = DEFAULT_BOUNDS,
                  chunk: int = DEFAULT_CHUNK, device: torch.device | str | None = None,
                  max_faces: int | None = None,
                  progress: Progress | None = None) -> ExtractedMesh:
    """Query every point of the grid, then marching cubes: the reference that the
    hierarchical extractor must match, at (resolution + 1)^3 field evaluations."""
    device = torch.device(device) if device is not None else field_device(field)
    grid = Grid(resolution, bounds)
    watch = Stopwatch(device)
    with watch.stage(f"dense {resolution}"):
        flat = torch.arange(grid.size ** 3, device=device)
        values = evaluate(field, grid, flat, chunk, progress_span(progress, 0.0, QUERY_SHARE))
        values = values.view((grid.size,) * 3)
    return finish(values, grid, len(flat), values.min().item(), watch, max_faces, progress)


def level_resolutions(coarse_resolution: int, resolution: int) -> list[int]:
    """Coarse, 2x coarse, ... up to `resolution`, which must be coarse times a power of two."""
    levels = [coarse_resolution]
    while levels[-1] < resolution:
        levels.append(2 * levels[-1])
    if levels[-1] != resolution:
        raise ValueError(f"resolution {resolution} is not coarse_resolution {coarse_resolution} "
                         "times a power of two")
    return levels


@torch.no_grad()
def extract_hierarchical(field: Field, resolution: int = 256, coarse_resolution: int = 32,
                         bounds: float = DEFAULT_BOUNDS, chunk: int = DEFAULT_CHUNK,
                         device: torch.device | str | None = None, max_faces: int | None = None,
                         lipschitz: float = 1.0,
                         progress: Progress | None = None) -> ExtractedMesh:
    """Dense coarse grid, then per doubling only the cells near the surface (dilated by a
    cell), then marching cubes: the dense result at a fraction of the queries.
    `resolution` must be `coarse_resolution` times a power of two.

    `lipschitz` bounds how fast the field changes per unit length near the surface (1 for an
    SDF); cells whose values come within that reach of zero are refined, so thin parts that
    fall between coarse points survive. Too small a bound can lose thin parts; too large
    only costs queries.
    """
    device = torch.device(device) if device is not None else field_device(field)
    levels = level_resolutions(coarse_resolution, resolution)
    share = QUERY_SHARE / len(levels)
    watch = Stopwatch(device)

    grid = Grid(coarse_resolution, bounds)
    with watch.stage(f"dense {coarse_resolution}"):
        flat = torch.arange(grid.size ** 3, device=device)
        values = evaluate(field, grid, flat, chunk, progress_span(progress, 0.0, share))
        values = values.view((grid.size,) * 3)
        queried = torch.ones_like(values, dtype=torch.bool)
    queried_points, lowest = len(flat), values.min().item()

    for level, finer in enumerate(levels[1:], start=1):
        level_progress = progress_span(progress, level * share, (level + 1) * share)
        with watch.stage(f"band {finer}"):
            split = dilate(near_surface_cells(values, grid.cell, lipschitz))
            values, queried = upsample(values, queried)
            grid = Grid(finer, bounds)
            wanted = points_of_split_cells(split) & ~queried
            queried_points += query_into(values, queried, wanted.view(-1).nonzero()[:, 0],
                                         field, grid, chunk, level_progress)
    with watch.stage("complete crossing cells"):
        queried_points += complete_crossing_cells(values, queried, field, grid, chunk,
                                                  progress_span(progress, QUERY_SHARE, QUERY_SHARE))
    return finish(values, grid, queried_points, lowest, watch, max_faces, progress)


# A learned part decoder's logits change by hundreds per unit near a thin part: with a
# smaller bound the 32^3 grid steps over rods and sheets thinner than a coarse cell
# (docs/results.md: at 16^3 and 50, 19 of 101 test parts were lost whole).
PART_LIPSCHITZ = 150.0
RESCUE_RESOLUTION = 64  # at most: the dense grid that looks for a part the band search did not find
RESCUE_MARGIN = 1.0  # logits above the field's minimum at which a sub-threshold part is cut
RESCUE_MAX_LEVEL = 4.0  # above this the decoder does not hold any place as the part


@torch.no_grad()
def extract_part(field: Field, resolution: int = 128, coarse_resolution: int = 32,
                 lipschitz: float = PART_LIPSCHITZ, device: torch.device | str | None = None,
                 chunk: int = DEFAULT_CHUNK) -> ExtractedMesh:
    """A part's surface that does not vanish because it is thin: the hierarchical extraction
    at level 0, and when that finds nothing, the same from a dense RESCUE_RESOLUTION grid,
    which sees parts thinner than the coarse search. If that grid is nowhere inside either,
    its minimum just above 0 is a wire or sheet the decoder holds just under 0.5 occupancy:
    extract at RESCUE_MARGIN above it (`level` says which). Empty only when the decoder
    holds nowhere as the part."""
    mesh = extract_hierarchical(field, resolution, coarse_resolution, chunk=chunk, device=device,
                                lipschitz=lipschitz)
    if len(mesh.faces):
        return mesh
    rescue_resolution = resolution
    while rescue_resolution > RESCUE_RESOLUTION and rescue_resolution % 2 == 0:
        rescue_resolution //= 2
    rescued = extract_hierarchical(field, resolution, rescue_resolution, chunk=chunk,
                                   device=device, lipschitz=lipschitz)
    queried, level = mesh.queried_points + rescued.queried_points, 0.0
    if not len(rescued.faces) and rescued.lowest + RESCUE_MARGIN <= RESCUE_MAX_LEVEL:
        level = rescued.lowest + RESCUE_MARGIN
        rescued = extract_hierarchical(lambda points: field(points) - level, resolution,
                                       rescue_resolution, chunk=chunk, device=device,
                                       lipschitz=lipschitz)
        queried += rescued.queried_points
    seconds = {**mesh.seconds, "rescue": sum(rescued.seconds.values())}
    return ExtractedMesh(rescued.vertices, rescued.faces, queried, seconds, rescued.lowest + level,
                         level)


def bench_scene(points: torch.Tensor) -> torch.Tensor:
    """SDF of a sphere, a box and a thin ring (tube radius 0.02) side by side: a part-like
    scene with a thin structure, for timing extraction."""
    sphere = (points - points.new_tensor([-0.45, 0.3, 0.0])).norm(dim=1) - 0.4
    offset = (points - points.new_tensor([0.45, 0.3, 0.0])).abs() - 0.3
    box = offset.clamp(min=0).norm(dim=1) + offset.max(dim=1).values.clamp(max=0)
    ring_radius = torch.hypot(points[:, 0], points[:, 2]) - 0.7
    ring = torch.hypot(ring_radius, points[:, 1] + 0.5) - 0.02
    return torch.minimum(torch.minimum(sphere, box), ring)


def bench_extraction(resolution: int = 256, coarse_resolution: int = 32,
                     samples: int = 100_000, device: str | None = None) -> dict:
    """Print and return field queries and seconds of dense vs hierarchical extraction of
    `bench_scene`, and the Chamfer distance between the two meshes. A learned decoder's
    time grows with the queries; with this analytic field the seconds are mostly the
    extractors' own grid work and marching cubes."""
    from engine.geometry.metrics import compare_meshes

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dense = extract_dense(bench_scene, resolution, device=device)
    near = extract_hierarchical(bench_scene, resolution, coarse_resolution, device=device)
    chamfer = compare_meshes((dense.vertices, dense.faces), (near.vertices, near.faces),
                             samples=samples)["chamfer"]
    result = {"dense_points": dense.queried_points, "dense_seconds": sum(dense.seconds.values()),
              "hierarchical_points": near.queried_points,
              "hierarchical_seconds": sum(near.seconds.values()),
              "hierarchical_stages": near.seconds, "faces": len(near.faces), "chamfer": chamfer}
    share = result["hierarchical_points"] / result["dense_points"]
    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in near.seconds.items())
    print(f"surface extraction at {resolution}^3 on {device}, {torch.get_num_threads()} threads "
          "(sphere + box + ring of tube radius 0.02):\n"
          f"  dense:        {dense.queried_points:>11,} points {result['dense_seconds']:6.2f} s\n"
          f"  hierarchical: {near.queried_points:>11,} points {result['hierarchical_seconds']:6.2f}"
          f" s ({share:.1%} of the points, from {coarse_resolution}^3)\n"
          f"    stages: {stages}\n"
          f"  {len(near.faces):,} faces; Chamfer distance dense vs hierarchical "
          f"({samples:,} samples): {chamfer:.2e}")
    return result
