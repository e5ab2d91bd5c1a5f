"""The part library behind the engine server's `library.search` and `library.asset` requests.

Registered at start-up when `<models>/library/library.json` exists (reading only that index,
so `hello` can report the size); the arrays, the image encoder and the HCR retriever load on
the first job, on the worker thread, and stay loaded. Without a library nothing is registered
and the server answers `model_unavailable`.

Object-level search ranks assets by the encoder's pooled vector, the space the generator
retrieves in (engine/retrieval/library_bank.py says why); part-level search needs a trained
HCR retriever (`<models>/retriever`), whose learned part queries find parts in an image
without masks. The request image is framed as the generator frames it.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from bridge.errors import RequestRefused
from bridge.protocol import Result
from engine.retrieval.library import INDEX_NAME, LibraryError
from engine.server import pipelines

log = logging.getLogger("partsmith.engine")


class LibraryService:
    """One loaded library and its searchers; `search` and `asset` are the two pipelines."""

    def __init__(self, folder: Path, retriever: Path | None = None):
        self.folder, self.retriever_folder = Path(folder), retriever
        self._loaded = None  # (library, object searcher, part searcher or None)
        self._lock = threading.Lock()

    def load(self):
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self):
        from engine.retrieval.encoders import load_encoder
        from engine.retrieval.hcr import HCR
        from engine.retrieval.library import PartLibrary
        from engine.retrieval.search import Searcher
        from engine.device import resolve_device

        device = resolve_device("auto")
        library = PartLibrary.load(self.folder)
        space = library.encoders[0]
        encoder = load_encoder(space, device)
        objects, parts = Searcher(library, encoder), None
        if self.retriever_folder is not None:
            retriever = HCR.from_pretrained(self.retriever_folder)  # small: stays on the CPU
            key = retriever.config.encoder
            try:
                parts = Searcher(library, encoder if key == space else load_encoder(key, device),
                                 retriever)
            except (LibraryError, RuntimeError) as error:  # incompatible or missing weights
                log.warning("library: part search off, retriever %s unusable: %s",
                            self.retriever_folder, error)
        return library, objects, parts

    def search(self, request: pipelines.Request, progress, cancelled) -> Result:
        from engine.render.image_prep import frame_object, to_rgba

        progress("load", 0.0)
        library, objects, parts = self.load()
        params = request.params
        level, k, category = params["level"], params["k"], params["category"]
        if level == "part" and parts is None:
            raise RequestRefused("model_unavailable", "part-level search needs an HCR "
                                 "retriever (models/retriever); search at object level")
        categories = {a["category"] for a in library.assets}
        if category is not None and category not in categories:
            raise RequestRefused("invalid_parameter", f"no {category!r} assets in the library "
                                 f"(it has: {', '.join(sorted(categories))})")
        progress("search", 0.5)
        image, _ = frame_object(to_rgba(request.image))
        # A category filter searches everything, then keeps that category's best k.
        wanted = k if category is None else (len(library) if level == "object"
                                              else library.num_parts)
        if level == "object":
            hits = objects.by_image(image, wanted)
        else:
            hits = parts.parts_in_image(image, wanted)
        if category is not None:
            hits = [h for h in hits
                    if library.assets[library.row(h.asset_id)]["category"] == category][:k]
        searcher = objects if level == "object" else parts
        return Result([], {"hits": [h.as_dict() for h in hits], "level": level,
                           "space": searcher.name})

    def asset(self, request: pipelines.Request, progress, cancelled) -> Result:
        progress("load", 0.0)
        library = self.load()[0]
        params = request.params
        row = library.row(params["asset_id"])  # LibraryError names the unknown id
        meta = library.assets[row]
        metadata = {"asset_id": meta["id"], "category": meta["category"],
                    "source": meta["source"], "labels": meta["labels"]}
        parts = []
        if params["parts"]:
            asset = library.part_asset_of(row)
            parts = asset.parts
            metadata["colours"] = asset.materials.round(4).tolist()  # one RGB per part
        arrays = {"thumbnail": library.thumbnail_bytes(row)} if params["thumbnail"] else {}
        return Result(parts, metadata, arrays)


def register_library(models: Path) -> list[str]:
    """Register the `library` pipelines when `models/library` holds a part library (and use
    `models/retriever` for part-level search when present); returns the names registered."""
    folder = Path(models) / "library"
    index = folder / INDEX_NAME
    if not index.is_file():
        return []
    info = json.loads(index.read_text())
    retriever = Path(models) / "retriever"
    service = LibraryService(folder, retriever if (retriever / "config.json").is_file() else None)
    details = {"bundle": str(folder), "assets": len(info.get("assets", [])),
               "parts": int(info.get("counts", {}).get("parts", 0)),
               "part_search": service.retriever_folder is not None}
    pipelines.register("library.search", pipelines.LIBRARY, service.search, details)
    pipelines.register("library.asset", pipelines.LIBRARY, service.asset, details)
    return [pipelines.LIBRARY]
