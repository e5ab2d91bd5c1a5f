"""The rows of a batch: what to make from which image, read from a folder of images or from
a manifest (CSV or JSONL with an `image` column and optional per-row settings).

A row's output folder is its `name` (the image's stem, or the manifest's `name` column),
unique within the batch. A value a row cannot use (parts "many", seed "x") fails that row
with `invalid_parameter` when it runs; a manifest the batch cannot read at all (no image
column, an unknown column) is refused whole, since every row would be wrong.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
# Per-row settings a manifest may give, with the type each must have; missing: the batch's.
SETTINGS = {"parts": int, "seed": int, "pipeline": str, "steps": int, "guidance": float,
            "top_k": int, "strength": float}
COLUMNS = ("image", "name", *SETTINGS)


class BatchInputError(ValueError):
    """An INPUT the batch cannot read at all; the message says what to fix."""


@dataclass(frozen=True)
class Row:
    name: str  # output folder DIR/<name>
    image: Path
    parts: int | None  # None: the pipeline picks the count
    seed: int
    pipeline: str
    overrides: dict = field(default_factory=dict)  # steps, guidance, top_k, strength given
    problem: str = ""  # why the row cannot run (its values), recorded as invalid_parameter

    def params(self) -> dict:
        """What the row's outputs depend on besides the image and the model."""
        return {"parts": self.parts, "seed": self.seed, "pipeline": self.pipeline,
                **self.overrides}


def image_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_rows(source: Path, *, parts: int | None, seed: int, pipeline: str) -> list[Row]:
    """Rows of a folder of images (sorted by file name; top level only) or of a manifest;
    `parts`, `seed`, `pipeline` are the defaults a manifest row may override."""
    source = Path(source)
    defaults = {"parts": parts, "seed": seed, "pipeline": pipeline}
    if source.is_dir():
        images = sorted(p for p in source.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise BatchInputError(f"{source} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        records = [{"image": str(p)} for p in images]
    elif source.suffix.lower() in MANIFEST_SUFFIXES and source.is_file():
        records = _manifest_records(source)
    elif source.exists():
        raise BatchInputError(f"{source} is neither a folder of images nor a .csv/.jsonl "
                              f"manifest")
    else:
        raise BatchInputError(f"{source} does not exist")
    rows, taken = [], set()
    for number, record in enumerate(records, 1):
        rows.append(_row(record, source, defaults, taken, number))
        taken.add(rows[-1].name)
    return rows


def _manifest_records(path: Path) -> list[dict]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            records = [{k: v for k, v in r.items() if v not in ("", None)}
                       for r in csv.DictReader(handle)]
    else:
        records = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BatchInputError(f"{path} line {number} is not JSON: {error}") from None
            if not isinstance(record, dict):
                raise BatchInputError(f"{path} line {number}: each line must be a JSON object")
            records.append(record)
    if not records:
        raise BatchInputError(f"{path} lists no rows")
    for number, record in enumerate(records, 1):
        unknown = sorted(set(record) - set(COLUMNS))
        if unknown:
            raise BatchInputError(f"{path} row {number}: unknown column(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(COLUMNS)})")
        if not record.get("image"):
            raise BatchInputError(f"{path} row {number} has no image")
    return records


def _row(record: dict, source: Path, defaults: dict, taken: set, number: int) -> Row:
    image = Path(str(record["image"]))
    if not image.is_absolute() and not source.is_dir():
        image = source.parent / image
    values, problems = dict(defaults), []
    for key, kind in SETTINGS.items():
        if key in record and record[key] is not None:
            value = _convert(record[key], kind, key == "parts")
            if value is _BAD:
                problems.append(f"{key} {record[key]!r} is not {_KIND_NAMES[kind]}")
            else:
                values[key] = value
    if values["parts"] is not None and values["parts"] < 1:
        problems.append(f"parts must be at least 1, got {values['parts']}")
    name = str(record.get("name") or image.stem)
    if "/" in name or "\\" in name or name.startswith(".") or not name.strip():
        problems.append(f"name {name!r} is not a folder name")
        name = f"row-{number}"
    name = _unique(name, taken)
    overrides = {k: values[k] for k in ("steps", "guidance", "top_k", "strength") if k in values}
    return Row(name, image, values["parts"], values["seed"], values["pipeline"], overrides,
               "; ".join(problems))


_BAD = object()
_KIND_NAMES = {int: "a whole number", float: "a number", str: "text"}


def _convert(value, kind: type, may_be_auto: bool):
    if may_be_auto and value == "auto":
        return None
    if isinstance(value, bool):
        return _BAD
    try:
        if kind is int:
            number = float(value)
            return int(number) if number.is_integer() else _BAD
        return kind(value)
    except (TypeError, ValueError):
        return _BAD


def _unique(name: str, taken: set) -> str:
    """`name`, or `name-2`, `name-3`, ... when an earlier row has it (a.png and a.jpg)."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate
