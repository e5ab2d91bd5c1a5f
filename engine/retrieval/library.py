"""The part library: exemplar assets for retrieval, in a versioned on-disk folder.

    library.json                  format, version, assets (id, name, category, source, labels,
                                  view count), encoders (key, dim), the VAE the latents come
                                  from, and the names of the two files below
    arrays-<hash>.safetensors     every numeric array, consolidated, memory-mapped on load:
        asset_parts (A+1)           offsets of each asset's parts
        part_vertices/part_faces (P+1)  offsets into vertices (V, 3) f32 / faces (F, 3) i32
                                    (part-local frames, indices local to the part)
        transforms (P, 4, 4) f64, mesh_ids (P,), colours (P, 3) f32
        latents (P, T, C) f16       VecSet VAE posterior means (object frame)
        asset_images (A+1)          offsets into image_offsets of each asset's PNGs:
                                    thumbnail (128², RGBA), then view_k, mask_k per view
        image_offsets (I+1)         byte offsets into the images file
        object.<e> (A, D), part.<e> (P, D)  float16 embeddings of encoder number e (json
                                    order); a part that no view shows has a zero vector
    images-<hash>.bin             the PNG bytes, read lazily (thumbnails, views, masks)

Writes are atomic: new content files get new names, library.json is replaced in one rename,
then the files it no longer names are deleted; a reader never sees a half-written library.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

from engine.data.asset import Part, PartAsset

FORMAT = "partsmith-part-library"
VERSION = 1
INDEX_NAME = "library.json"
THUMBNAIL = 128
DEFAULT_SIZE = 1236  # PartRAG's retrieval database
DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I32": np.int32,
          "I64": np.int64, "U8": np.uint8}


class LibraryError(ValueError):
    """A folder that is not a readable library, or a request it cannot answer."""


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def thumbnail(rgba: np.ndarray, side: int = THUMBNAIL) -> bytes:
    """A view downscaled to side² (RGBA, aspect kept, centred) as PNG bytes."""
    image = Image.fromarray(rgba).convert("RGBA")
    image.thumbnail((side, side), Image.LANCZOS)
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return png_bytes(np.asarray(canvas))


@dataclass
class AssetRecord:
    """One asset as it goes into a library."""
    id: str
    category: str
    source: str  # where it came from: "dataset:<split>/<name>" or the imported file
    asset: PartAsset
    latents: np.ndarray  # (parts, T, C)
    views: list[bytes]  # RGBA PNGs
    masks: list[bytes]  # part-index PNGs (255 = background)
    thumbnail: bytes
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


def _offsets(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)


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
            raise LibraryError(f"no asset {asset_id!r} in the library {self.folder}")
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
            v0, v1 = a["part_vertices"][p], a["part_vertices"][p + 1]
            f0, f1 = a["part_faces"][p], a["part_faces"][p + 1]
            colours.append(a["colours"][p])
            parts.append(Part(self.part_labels[p], a["vertices"][v0:v1], a["faces"][f0:f1],
                              a["transforms"][p], int(a["mesh_ids"][p]), len(parts)))
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

    def thumbnail_png(self, row: int) -> bytes:
        return self._image(row, 0)

    def thumbnail(self, row: int) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(self.thumbnail_png(row))).convert("RGBA"))

    def view(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """View k of the asset at `row`: RGBA (H, W, 4) and part-index mask (H, W)."""
        if not 0 <= k < self.assets[row]["views"]:
            raise LibraryError(f"{self.ids[row]} has {self.assets[row]['views']} views")
        rgba = np.asarray(Image.open(io.BytesIO(self._image(row, 1 + 2 * k))).convert("RGBA"))
        mask = np.asarray(Image.open(io.BytesIO(self._image(row, 2 + 2 * k))))
        return rgba, mask

    def records(self) -> list[AssetRecord]:
        """Every asset as a record (for rewriting the library with more assets)."""
        out = []
        for row, meta in enumerate(self.assets):
            views = meta["views"]
            out.append(AssetRecord(
                meta["id"], meta["category"], meta["source"], self.part_asset_of(row),
                self.latents(row), [self._image(row, 1 + 2 * k) for k in range(views)],
                [self._image(row, 2 + 2 * k) for k in range(views)], self.thumbnail_png(row),
                {e: self.embeddings(e, "object")[row] for e in self.encoders},
                {e: self.embeddings(e, "part")[list(self.part_rows(row))]
                 for e in self.encoders}))
        return out


def write_library(folder: str | Path, records: list[AssetRecord], encoders: dict[str, int],
                  shape: dict, extra: dict | None = None) -> Path:
    """Write `records` as a library in `folder` (atomically replacing one already there).
    `encoders` maps every encoder key to its embedding width; each record must have
    embeddings for all of them. `shape` describes the VAE of the latents."""
    folder = Path(folder)
    if not records:
        raise LibraryError("a library needs at least one asset")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise LibraryError(f"duplicate asset ids: {', '.join(dupes[:10])}")
    parts = [p for r in records for p in r.asset.parts]
    latent_shapes = {r.latents.shape[1:] for r in records}
    if len(latent_shapes) != 1:
        raise LibraryError(f"assets have latents of different shapes {sorted(latent_shapes)}")
    images = [png for r in records for png in [r.thumbnail] + [b for pair in zip(r.views, r.masks)
                                                                for b in pair]]
    arrays = {
        "asset_parts": _offsets([len(r.asset.parts) for r in records]),
        "part_vertices": _offsets([len(p.vertices) for p in parts]),
        "part_faces": _offsets([len(p.faces) for p in parts]),
        "vertices": np.concatenate([p.vertices for p in parts]).astype(np.float32),
        "faces": np.concatenate([p.faces for p in parts]).astype(np.int32),
        "transforms": np.stack([p.transform for p in parts]).astype(np.float64),
        "mesh_ids": np.array([p.mesh_id for p in parts], dtype=np.int64),
        "colours": np.concatenate([r.asset.materials[[p.material for p in r.asset.parts]]
                                   for r in records]).astype(np.float32),
        "latents": np.concatenate([r.latents for r in records]).astype(np.float16),
        "asset_images": _offsets([1 + 2 * len(r.views) for r in records]),
        "image_offsets": _offsets([len(b) for b in images]),
    }
    for e, (key, dim) in enumerate(encoders.items()):
        for record in records:
            if key not in record.object_embeddings or key not in record.part_embeddings:
                raise LibraryError(f"asset {record.id} has no {key} embeddings")
        arrays[f"object.{e}"] = np.stack([r.object_embeddings[key]
                                          for r in records]).astype(np.float16)
        arrays[f"part.{e}"] = np.concatenate([r.part_embeddings[key]
                                              for r in records]).astype(np.float16)
        if arrays[f"object.{e}"].shape[1] != dim or arrays[f"part.{e}"].shape[1] != dim:
            raise LibraryError(f"{key} embeddings are not {dim}-dimensional")
    folder.mkdir(parents=True, exist_ok=True)
    blob = b"".join(images)
    tag = hashlib.sha256(blob + b"".join(a.tobytes() for a in arrays.values())).hexdigest()[:16]
    arrays_name, images_name = f"arrays-{tag}.safetensors", f"images-{tag}.bin"
    _write_atomic(folder / images_name, lambda path: path.write_bytes(blob))
    _write_atomic(folder / arrays_name, lambda path: save_file(arrays, path))
    info = {"format": FORMAT, "version": VERSION, "arrays": arrays_name, "images": images_name,
            "encoders": [{"key": k, "dim": d} for k, d in encoders.items()], "shape": shape,
            "counts": {"assets": len(records), "parts": len(parts)}, **(extra or {}),
            "assets": [{"id": r.id, "category": r.category, "source": r.source,
                        "labels": r.asset.labels, "views": len(r.views)} for r in records]}
    _write_atomic(folder / INDEX_NAME, lambda path: path.write_text(json.dumps(info, indent=1)))
    for stale in folder.glob("arrays-*.safetensors"):
        if stale.name != arrays_name:
            stale.unlink()
    for stale in folder.glob("images-*.bin"):
        if stale.name != images_name:
            stale.unlink()
    return folder


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
