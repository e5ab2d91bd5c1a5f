"""Every file the engine writes goes through `write_atomic`: readers (and a crash midway)
see the old file or the new one, never half of one. Inputs that are missing raise
`MissingInput` naming the command that makes them."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


class MissingInput(FileNotFoundError):
    """An input a command needs that has not been made yet; the message says which command
    makes it. The command line prints it as one line instead of a traceback."""


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path` (same suffix, so writers that go by
    it pick the right format; named per process, so parallel workers never share one), then
    rename it over `path`. Readable by everyone, like a plain write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | Path, data, indent: int = 1) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent))
