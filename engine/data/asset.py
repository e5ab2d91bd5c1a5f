"""Part-structured assets in the canonical frame of ../shared/DESIGN.md.

A category generator adds part meshes in any convenient frame and scale to an
`AssetBuilder`; `AssetBuilder.finish` normalises the whole object (bbox centre at the origin,
longest side 2, +Y up), moves each part into its local frame (origin at the part's bbox
centre, axes aligned with the object frame) with a translation as its rigid transform, and
gives parts with identical local geometry one `mesh_id` so they become linked duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bridge.protocol import Part
from engine.data.primitives import Mesh, merge


def mesh_id_name(number: int) -> str:
    """A part's mesh id from the number dataset and library files store."""
    return f"mesh{number}"


def mesh_id_numbers(parts: list[Part]) -> np.ndarray:
    """(parts,) int64 numbers for the files: equal ids get equal numbers, in order of first use."""
    numbers: dict = {}
    return np.array([numbers.setdefault(p.mesh_id, len(numbers)) for p in parts], dtype=np.int64)


@dataclass
class PartAsset:
    category: str
    seed: int
    parts: list[Part]
    materials: np.ndarray  # (M, 3) float RGB in [0, 1]: the object's few plausible colours
    params: dict = field(default_factory=dict)  # style choices, articulation angles

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.parts]


def _same_geometry(part: "Part", vertices: np.ndarray, faces: np.ndarray) -> bool:
    return (part.faces.shape == faces.shape and np.array_equal(part.faces, faces)
            and np.allclose(part.vertices, vertices, atol=1e-5))


class AssetBuilder:
    """Collects labelled part meshes for one object, then normalises them into a PartAsset."""

    def __init__(self, category: str, materials) -> None:
        self.category = category
        self.materials = np.asarray(materials, dtype=np.float64).reshape(-1, 3)
        self.params: dict = {}
        self._parts: list[tuple[str, Mesh, int]] = []

    def add(self, part: str, mesh: Mesh | list[Mesh], material: int = 0) -> None:
        """Add one part labelled `<category>_<part>`; a list of meshes forms a single part."""
        if isinstance(mesh, list):
            mesh = merge(mesh)
        if not 0 <= material < len(self.materials):
            raise ValueError(f"material {material} out of range for {len(self.materials)} materials")
        self._parts.append((f"{self.category}_{part}", mesh, material))

    def finish(self, seed: int) -> PartAsset:
        if not self._parts:
            raise ValueError(f"{self.category}: no parts were added")
        all_v = np.concatenate([m.vertices for _, m, _ in self._parts])
        lo, hi = all_v.min(0), all_v.max(0)
        centre, scale = (lo + hi) / 2, 2.0 / float((hi - lo).max())
        parts: list[Part] = []
        for label, mesh, material in self._parts:
            v = (mesh.vertices - centre) * scale
            part_centre = (v.min(0) + v.max(0)) / 2
            local = (v - part_centre).astype(np.float32)
            faces = mesh.faces.astype(np.int32)
            twin = next((p for p in parts if _same_geometry(p, local, faces)), None)
            if twin is None:
                mesh_id = mesh_id_name(len({p.mesh_id for p in parts}))
            else:  # share the exact same arrays, not near-equal copies
                mesh_id, local, faces = twin.mesh_id, twin.vertices, twin.faces
            transform = np.eye(4)
            transform[:3, 3] = part_centre
            parts.append(Part(local, faces, transform, label, len(parts), mesh_id, material))
        return PartAsset(self.category, seed, parts, self.materials, dict(self.params))
