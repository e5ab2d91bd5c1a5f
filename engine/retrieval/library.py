"""The part library: exemplar assets for retrieval, in a versioned on-disk folder.

    library.json                  format, version, assets (id, name, category, source, labels,
                                  stored view count), encoders (key, dim), the VAE the latents
                                  come from, the views kept per asset, the two file names below
    arrays-<hash>.safetensors     every numeric array, consolidated, memory-mapped on load:
        asset_parts (A+1)           offsets of each asset's parts
        part_mesh (P,)              row of each part's mesh in the mesh table (compact.py:
                                    identical meshes stored once, uint16-quantised vertices in
                                    part-local frames, part-local uint16/uint32 faces)
        transforms (P, 4, 4) f64, mesh_ids (P,), colours (P, 3) f32
        latents (P, T, C) f16       VecSet VAE posterior means (object frame)
        asset_images (A+1)          offsets into image_offsets of each asset's images:
                                    thumbnail (128², RGBA), then view_k, mask_k per stored view
        image_offsets (I+1)         byte offsets into the images file
        object.<e> (A, D), part.<e> (P, D)  float16 embeddings of encoder number e (json
                                    order), computed from all the dataset's views, stored or
                                    not; a part that no view shows has a zero vector
    images-<hash>.bin             the encoded images, read lazily: lossless WebP thumbnails and
                                  views, 8-bit PNG masks

Version 2 (this layout) replaced version 1 (float32 vertices and int32 faces per part, PNG
views), which is refused with a message to rebuild.
Writes (library_writer.py, one asset at a time in bounded memory) are atomic: new content
files get new names, library.json is replaced in one rename, then the files it no longer
names are deleted; a reader never sees a half-written library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge.errors import RequestRefused
from engine.data.asset import Part, PartAsset, mesh_id_name
from engine.retrieval.compact import decode_mask, decode_rgba, unpack_mesh

FORMAT = "partsmith-part-library"
VERSION = 2
INDEX_NAME = "library.json"
THUMBNAIL = 128
DEFAULT_SIZE = 1236  # PartRAG's retrieval database
DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I32": np.int32,
          "I64": np.int64, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32}


class LibraryError(ValueError):
    """A folder that is not a readable library, or a request it cannot answer."""


class UnknownAsset(RequestRefused, LibraryError):
    """A request named an asset id the library does not have."""

    def __init__(self, message: str):
        super().__init__("unknown_asset", message)


@dataclass
class AssetRecord:
    """One asset as it goes into a library."""
    id: str
    category: str
    source: str  # where it came from: "dataset:<split>/<name>" or the imported file
    asset: PartAsset
    latents: np.ndarray  # (parts, T, C)
    views: list[bytes]  # the stored views, encoded RGBA (compact.encode_rgba)
    masks: list[bytes]  # their part-index masks (compact.encode_mask; 255 = background)
    thumbnail: bytes  # compact.thumbnail of the first view
    object_embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (D,)
    part_embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (parts, D)


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read-only memory maps of every tensor of a safetensors file (8-byte little-endian
    header size, JSON header of dtype / shape / data offsets, then the data): loading costs
    the header, the pages are read when used."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, stop = entry["data_offsets"]
        shape = tuple(entry["shape"])
        if stop == start:
            arrays[name] = np.zeros(shape, DTYPES[entry["dtype"]])
            continue
        arrays[name] = np.memmap(path, DTYPES[entry["dtype"]], "r", 8 + size + start, shape)
    return arrays


class PartLibrary:
    """A loaded library: metadata and arrays in memory, images read on demand."""

    def __init__(self, folder: Path, info: dict, arrays: dict[str, np.ndarray]):
        self.folder, self.info, self.arrays = Path(folder), info, arrays
        self.assets = info["assets"]
        self.ids = [a["id"] for a in self.assets]
        self._row = {asset_id: i for i, asset_id in enumerate(self.ids)}
        self.encoders = [e["key"] for e in info["encoders"]]
        starts = arrays["asset_parts"]
        self.part_asset = np.repeat(np.arange(len(self.assets)), np.diff(starts))
        self.part_index = np.arange(len(self.part_asset)) - starts[self.part_asset]
        self.part_labels = [label for a in self.assets for label in a["labels"]]

    @classmethod
    def load(cls, folder: str | Path) -> PartLibrary:
        folder = Path(folder)
        path = folder / INDEX_NAME
        if not path.is_file():
            raise LibraryError(f"{folder} is not a part library ({INDEX_NAME} not found)")
        info = json.loads(path.read_text())
        if info.get("format") != FORMAT:
            raise LibraryError(f"{path} is not a {FORMAT} index")
        if info.get("version") != VERSION:
            raise LibraryError(f"{folder}: library format version {info.get('version')}, this "
                               f"engine reads version {VERSION}; rebuild it with "
                               f"`python -m engine library build`")
        return cls(folder, info, map_safetensors(folder / info["arrays"]))

    def __len__(self) -> int:
        return len(self.assets)

    @property
    def num_parts(self) -> int:
        return len(self.part_asset)

    def row(self, asset_id: str) -> int:
        if asset_id not in self._row:
            raise UnknownAsset(f"no asset {asset_id!r} in the library {self.folder}; "
                               f"library.search lists the assets it has")
        return self._row[asset_id]

    def part_rows(self, row: int) -> range:
        starts = self.arrays["asset_parts"]
        return range(int(starts[row]), int(starts[row + 1]))

    def part_row(self, asset_id: str, part: int) -> int:
        rows = self.part_rows(self.row(asset_id))
        if not 0 <= part < len(rows):
            raise LibraryError(f"{asset_id} has {len(rows)} parts, no part {part}")
        return rows[part]

    def part_asset_of(self, row: int) -> PartAsset:
        """The asset at `row` with its part meshes, transforms, mesh ids and colours."""
        a, meta = self.arrays, self.assets[row]
        parts = []
        colours = []
        for p in self.part_rows(row):
            vertices, faces = unpack_mesh(a, int(a["part_mesh"][p]))
            colours.append(a["colours"][p])
            parts.append(Part(vertices, faces, a["transforms"][p], self.part_labels[p], len(parts),
                              mesh_id_name(int(a["mesh_ids"][p])), len(parts)))
        return PartAsset(meta["category"], 0, parts, np.array(colours, dtype=np.float64))

    def asset(self, asset_id: str) -> PartAsset:
        return self.part_asset_of(self.row(asset_id))

    def latents(self, row: int) -> np.ndarray:
        """(parts, T, C) float32 VAE latents of the asset at `row`."""
        rows = self.part_rows(row)
        return self.arrays["latents"][rows.start:rows.stop].astype(np.float32)

    def shape_features(self, level: str) -> np.ndarray:
        """Mean-pooled latents (HCR's y): per part (P, C), or per asset (A, C) as the mean
        of its parts'."""
        parts = self.arrays["latents"].astype(np.float32).mean(1)
        if level == "part":
            return parts
        sums = np.add.reduceat(parts, self.arrays["asset_parts"][:-1], axis=0)
        return sums / np.diff(self.arrays["asset_parts"])[:, None]

    def embeddings(self, encoder: str, level: str) -> np.ndarray:
        """(A, D) object or (P, D) part embeddings of `encoder` (float16)."""
        if encoder not in self.encoders:
            raise LibraryError(f"the library has no {encoder} embeddings (it has: "
                               f"{', '.join(self.encoders)})")
        return self.arrays[f"{level}.{self.encoders.index(encoder)}"]

    def _image(self, row: int, slot: int) -> bytes:
        first = int(self.arrays["asset_images"][row])
        start, stop = self.arrays["image_offsets"][first + slot:first + slot + 2]
        with open(self.folder / self.info["images"], "rb") as f:
            f.seek(int(start))
            return f.read(int(stop - start))

    def thumbnail_bytes(self, row: int) -> bytes:
        return self._image(row, 0)

    def thumbnail(self, row: int) -> np.ndarray:
        return decode_rgba(self.thumbnail_bytes(row))

    def view(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored view k of the asset at `row`: RGBA (H, W, 4) and part-index mask (H, W).
        A library keeps the first `stored_views` (library.json) of each asset's views."""
        if not 0 <= k < self.assets[row]["views"]:
            raise LibraryError(f"{self.ids[row]} has {self.assets[row]['views']} stored views "
                               f"(the library keeps {self.info['stored_views']} per asset)")
        return decode_rgba(self._image(row, 1 + 2 * k)), decode_mask(self._image(row, 2 + 2 * k))

    def iter_records(self):
        """Every asset as a record, one at a time (for rewriting the library with more
        assets in bounded memory)."""
        for row, meta in enumerate(self.assets):
            views = meta["views"]
            yield AssetRecord(
                meta["id"], meta["category"], meta["source"], self.part_asset_of(row),
                self.latents(row), [self._image(row, 1 + 2 * k) for k in range(views)],
                [self._image(row, 2 + 2 * k) for k in range(views)], self.thumbnail_bytes(row),
                {e: self.embeddings(e, "object")[row] for e in self.encoders},
                {e: self.embeddings(e, "part")[list(self.part_rows(row))]
                 for e in self.encoders})
