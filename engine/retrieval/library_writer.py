"""Writing a part library one asset at a time, in bounded memory (library.py has the format).

Every array row an asset contributes is appended to a spill file in a staging folder beside
the library, images to one blob; `finish()` streams the spill files into the safetensors
file (header first: every shape is known by then), renames the blob into place, replaces
library.json in one rename and deletes the files it no longer names. Memory holds one asset,
the asset list of library.json and a digest per distinct mesh, however large the library;
a writer that is not finished leaves the library as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from engine.data.asset import mesh_id_numbers
from engine.files import write_json_atomic
from engine.retrieval.compact import offsets, quantise
from engine.retrieval.library import FORMAT, INDEX_NAME, VERSION, AssetRecord, LibraryError

SAFETENSORS_DTYPES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32",
                      np.dtype(np.float64): "F64", np.dtype(np.int32): "I32",
                      np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8",
                      np.dtype(np.uint16): "U16", np.dtype(np.uint32): "U32"}
COPY_CHUNK = 1 << 22


class _Spill:
    """Rows of one array appended to a file: its dtype, trailing shape and row count."""

    def __init__(self, path: Path, dtype, tail: tuple = ()):
        self.path, self.dtype, self.tail, self.rows = path, np.dtype(dtype), tail, 0
        self._file = path.open("wb")

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.tail:
            raise LibraryError(f"{self.path.name}: rows of shape {rows.shape[1:]}, the library "
                               f"holds {self.tail}")
        self._file.write(rows.tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        self._file.close()

    @property
    def shape(self) -> list[int]:
        return [self.rows, *self.tail]


class LibraryWriter:
    """`add(record)` per asset, then `finish()`; usable as a context manager (an exception
    inside leaves the library untouched)."""

    def __init__(self, folder: str | Path, encoders: dict[str, int], shape: dict,
                 stored_views: int, extra: dict | None = None):
        """`encoders` maps every encoder key to its embedding width; `shape` describes the VAE
        of the latents; `stored_views` is the views kept per asset (recorded for `library
        add`; no record may carry more)."""
        if stored_views < 0:
            raise LibraryError(f"stored views must be 0 or more, got {stored_views}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.encoders, self.shape, self.stored_views = dict(encoders), shape, stored_views
        self.extra = dict(extra or {})
        self.stage = Path(tempfile.mkdtemp(prefix=".writing-", dir=self.folder))
        self.spills: dict[str, _Spill] = {}
        self.assets: list[dict] = []
        self.ids: set[str] = set()
        self.part_counts, self.image_counts, self.image_sizes = [], [], []
        self.mesh_rows: dict[bytes, int] = {}
        self.mesh_vertex_counts, self.mesh_face_counts = [], []
        self.widest_face = 0
        self.latent_shape = None
        self._images = (self.stage / "images.bin").open("wb")

    def __enter__(self) -> LibraryWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            self.abort()

    def _spill(self, name: str, dtype, tail: tuple = ()) -> _Spill:
        if name not in self.spills:
            self.spills[name] = _Spill(self.stage / name, dtype, tail)
        return self.spills[name]

    def add(self, record: AssetRecord) -> None:
        """Append one asset (checked first, so a refused record changes nothing)."""
        self._check(record)
        parts = record.asset.parts
        for part in parts:
            self._add_mesh(part.vertices, part.faces)
        self._spill("transforms", np.float64, (4, 4)).append(
            np.stack([p.transform for p in parts]))
        self._spill("mesh_ids", np.int64).append(mesh_id_numbers(parts))
        self._spill("colours", np.float32, (3,)).append(
            record.asset.materials[[p.material for p in parts]])
        self._spill("latents", np.float16, self.latent_shape).append(record.latents)
        for e, key in enumerate(self.encoders):
            dim = self.encoders[key]
            self._spill(f"object.{e}", np.float16, (dim,)).append(
                record.object_embeddings[key][None])
            self._spill(f"part.{e}", np.float16, (dim,)).append(record.part_embeddings[key])
        images = [record.thumbnail] + [b for pair in zip(record.views, record.masks)
                                       for b in pair]
        for data in images:
            self._images.write(data)
            self.image_sizes.append(len(data))
        self.part_counts.append(len(parts))
        self.image_counts.append(len(images))
        self.ids.add(record.id)
        self.assets.append({"id": record.id, "category": record.category,
                            "source": record.source, "labels": record.asset.labels,
                            "views": len(record.views)})

    def _check(self, record: AssetRecord) -> None:
        if record.id in self.ids:
            raise LibraryError(f"duplicate asset id: {record.id}")
        if len(record.views) != len(record.masks) or len(record.views) > self.stored_views:
            raise LibraryError(f"asset {record.id} has {len(record.views)} views and "
                               f"{len(record.masks)} masks; the library stores "
                               f"{self.stored_views} of each")
        if self.latent_shape is None:
            self.latent_shape = tuple(record.latents.shape[1:])
        elif tuple(record.latents.shape[1:]) != self.latent_shape:
            raise LibraryError(f"assets have latents of different shapes "
                               f"{sorted({self.latent_shape, tuple(record.latents.shape[1:])})}")
        if len(record.latents) != len(record.asset.parts):
            raise LibraryError(f"asset {record.id} has {len(record.asset.parts)} parts and "
                               f"{len(record.latents)} latents")
        for key, dim in self.encoders.items():
            if key not in record.object_embeddings or key not in record.part_embeddings:
                raise LibraryError(f"asset {record.id} has no {key} embeddings")
            if (np.shape(record.object_embeddings[key]) != (dim,)
                    or np.shape(record.part_embeddings[key]) != (len(record.asset.parts), dim)):
                raise LibraryError(f"{key} embeddings are not {dim}-dimensional")

    def _add_mesh(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        """A part's row in the mesh table: identical meshes (by digest) are stored once,
        vertices as uint16 steps across the mesh's box (compact.py)."""
        vertices, faces = np.asarray(vertices, np.float32), np.asarray(faces, np.int32)
        digest = hashlib.sha1(vertices.tobytes() + b"|" + faces.tobytes()).digest()
        if digest not in self.mesh_rows:
            self.mesh_rows[digest] = len(self.mesh_rows)
            origin, step, q = quantise(vertices)
            self._spill("mesh_origin", np.float32, (3,)).append(origin[None])
            self._spill("mesh_step", np.float32, (3,)).append(step[None])
            self._spill("vertices", np.uint16, (3,)).append(q)
            self._spill("faces", np.uint32, (3,)).append(faces)
            self.widest_face = max(self.widest_face, int(faces.max(initial=0)))
            self.mesh_vertex_counts.append(len(vertices))
            self.mesh_face_counts.append(len(faces))
        self._spill("part_mesh", np.int32).append(np.array([self.mesh_rows[digest]]))

    def finish(self) -> Path:
        """Write the library (atomically replacing one already there); returns its folder."""
        if not self.assets:
            self.abort()
            raise LibraryError("a library needs at least one asset")
        self._images.close()
        for spill in self.spills.values():
            spill.close()
        small = {"asset_parts": offsets(self.part_counts),
                 "mesh_vertices": offsets(self.mesh_vertex_counts),
                 "mesh_faces": offsets(self.mesh_face_counts),
                 "asset_images": offsets(self.image_counts),
                 "image_offsets": offsets(self.image_sizes)}
        narrow = self.widest_face <= np.iinfo(np.uint16).max  # faces as uint16 where they fit
        entries = [(name, array.dtype, list(array.shape), array) for name, array in small.items()]
        for name, spill in self.spills.items():
            dtype = np.dtype(np.uint16) if name == "faces" and narrow else spill.dtype
            entries.append((name, dtype, spill.shape, spill))
        digest = hashlib.sha256()
        with (self.stage / "images.bin").open("rb") as blob:
            for chunk in iter(lambda: blob.read(COPY_CHUNK), b""):
                digest.update(chunk)
        arrays_tmp = self.stage / "arrays.safetensors"
        _write_safetensors(arrays_tmp, entries, digest)
        tag = digest.hexdigest()[:16]
        arrays_name, images_name = f"arrays-{tag}.safetensors", f"images-{tag}.bin"
        for tmp, name in ((self.stage / "images.bin", images_name), (arrays_tmp, arrays_name)):
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.folder / name)
        info = {"format": FORMAT, "version": VERSION, "arrays": arrays_name,
                "images": images_name,
                "encoders": [{"key": k, "dim": d} for k, d in self.encoders.items()],
                "shape": self.shape, "stored_views": self.stored_views,
                "counts": {"assets": len(self.assets), "parts": int(sum(self.part_counts))},
                **self.extra, "assets": self.assets}
        write_json_atomic(self.folder / INDEX_NAME, info)
        for pattern, keep in (("arrays-*.safetensors", arrays_name), ("images-*.bin", images_name),
                              ("index-*.faiss", None)):  # search indexes of the old content
            for stale in self.folder.glob(pattern):
                if stale.name != keep:
                    stale.unlink()
        shutil.rmtree(self.stage, ignore_errors=True)
        return self.folder

    def abort(self) -> None:
        self._images.close()
        for spill in self.spills.values():
            spill.close()
        shutil.rmtree(self.stage, ignore_errors=True)


def _write_safetensors(path: Path, entries: list, digest) -> None:
    """A safetensors file from (name, dtype, shape, source) entries, sources being arrays or
    spills (streamed from their files, converted chunk by chunk where the dtype narrows);
    every byte written also goes into `digest`."""
    header, start = {}, 0
    for name, dtype, shape, _ in entries:
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": shape,
                        "data_offsets": [start, start + size]}
        start += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned, as safetensors writes it

    def write(handle) -> None:
        handle.write(len(text).to_bytes(8, "little") + text)
        for _, dtype, _, source in entries:
            if isinstance(source, np.ndarray):
                data = np.ascontiguousarray(source, dtype=dtype).tobytes()
                handle.write(data)
                digest.update(data)
                continue
            item = source.dtype.itemsize * int(np.prod(source.tail, dtype=np.int64))
            with source.path.open("rb") as spill:
                for chunk in iter(lambda: spill.read(COPY_CHUNK // item * item), b""):
                    data = np.frombuffer(chunk, source.dtype).astype(dtype).tobytes()
                    handle.write(data)
                    digest.update(data)

    with path.open("wb") as handle:
        write(handle)


def write_library(folder: str | Path, records: Iterable[AssetRecord], encoders: dict[str, int],
                  shape: dict, stored_views: int, extra: dict | None = None) -> Path:
    """Write `records` (any iterable: a generator keeps memory bounded) as a library in
    `folder`, atomically replacing one already there (LibraryWriter)."""
    with LibraryWriter(folder, encoders, shape, stored_views, extra) as writer:
        for record in records:
            writer.add(record)
        return writer.finish()
