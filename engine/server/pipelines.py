"""Registry of the pipelines the engine can run, keyed by (operation, name).

A pipeline is a plain function `run(request, progress, cancelled) -> Result`:
  - `request` is a validated Request (decoded image, parts, parameters);
  - `progress(stage, fraction, message="")` reports overall progress in [0, 1] and raises
    JobCancelled once the job has been cancelled, so reporting is also a cancel check;
  - `cancelled()` says whether the job was cancelled, for loops that report rarely; a
    pipeline that sees it raises JobCancelled (a result it returns anyway is dropped).
Pipelines run on the single worker thread, one job at a time.
Model code registers its pipelines at start-up (or via `serve --pipeline-module`); the
server never needs to know what is behind a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bridge.errors import ProtocolError
from bridge.protocol import Result

# The pipelines the design calls for, and where their bundles are installed: a request
# naming one of these that is not registered gets "not installed", not "unknown".
EXPECTED = {
    ("generate", "partrag"): "models/partrag",
    ("edit", "partrag"): "models/partrag",
    ("candidates", "partrag"): "models/partrag",
    ("batch", "partrag"): "models/partrag",
    ("generate", "unipart"): "models/unipart",
    ("batch", "unipart"): "models/unipart",
    ("library.search", "library"): "models/library",
    ("library.asset", "library"): "models/library",
}
LIBRARY = "library"  # library requests name no pipeline; they go to this one


class JobCancelled(Exception):
    """Raised inside a pipeline (by `progress`, or by the pipeline itself) to stop a job."""


@dataclass(frozen=True)
class Request:
    """A validated job request as a pipeline sees it."""

    operation: str  # generate | edit | candidates | batch | library.search | library.asset
    pipeline: str
    params: dict  # the body fields of the request, defaults filled in
    image: np.ndarray | None = None  # uint8 (H, W, 4) RGBA; may be read-only
    parts: list = field(default_factory=list)  # bridge.protocol.Part, for edits and candidates


Progress = Callable[..., None]
Run = Callable[[Request, Progress, Callable[[], bool]], Result]


@dataclass(frozen=True)
class Pipeline:
    operation: str
    name: str
    run: Run
    details: dict  # JSON shown in `hello`, e.g. {"bundle": ..., "assets": 1200}


_registry: dict[tuple[str, str], Pipeline] = {}


def register(operation: str, name: str, run: Run, details: dict | None = None) -> None:
    """Make `run` serve requests of `operation` that name pipeline `name`. `details` is
    shown in `hello`; the `library` pipeline reports its size there as {"assets": N}."""
    _registry[(operation, name)] = Pipeline(operation, name, run, dict(details or {}))


def lookup(operation: str, name: str) -> Pipeline:
    """The registered pipeline, or a ProtocolError a user can act on."""
    pipeline = _registry.get((operation, name))
    if pipeline is not None:
        return pipeline
    bundle = EXPECTED.get((operation, name))
    if bundle is not None:
        what = "part library" if name == "library" else f"model bundle for {name!r}"
        raise ProtocolError("model_unavailable", f"no {what} installed ({bundle}); "
                            "install it and restart the engine")
    available = sorted(n for op, n in _registry if op == operation)
    raise ProtocolError("unknown_pipeline", f"unknown {operation} pipeline {name!r} "
                        f"(installed: {', '.join(available) or 'none'})")


def registered() -> list[Pipeline]:
    return list(_registry.values())
