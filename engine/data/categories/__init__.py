"""Registry of procedural categories.

Each category is a function `(rng) -> AssetBuilder` decorated with `@category("name")`; it
draws every random choice from `rng`, so an asset is a pure function of (category, seed).
Modules listed in `_MODULES` are imported on first use to fill the registry.
"""

from __future__ import annotations

import importlib
import zlib
from typing import Callable

import numpy as np

from engine.data.asset import AssetBuilder, PartAsset

CategoryFn = Callable[[np.random.Generator], AssetBuilder]
_REGISTRY: dict[str, CategoryFn] = {}
_MODULES = ("furniture", "household", "vehicles", "articulated")


def category(name: str) -> Callable[[CategoryFn], CategoryFn]:
    def register(fn: CategoryFn) -> CategoryFn:
        if name in _REGISTRY:
            raise ValueError(f"category {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn
    return register


def categories() -> list[str]:
    """All category names, sorted."""
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return sorted(_REGISTRY)


def generate_asset(name: str, seed: int) -> PartAsset:
    """The asset of category `name` for `seed` (deterministic)."""
    names = categories()
    if name not in _REGISTRY:
        raise KeyError(f"unknown category {name!r}; known: {', '.join(names)}")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    builder = _REGISTRY[name](rng)
    asset = builder.finish(seed)
    if asset.category != name:
        raise ValueError(f"category function {name!r} built a {asset.category!r}")
    return asset
