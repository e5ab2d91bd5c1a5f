"""DIR/batch.jsonl: one JSON line per finished row attempt, appended as rows finish.

Appending keeps a 10,000-row batch cheap (no rewrite per row); each record is one write of
one line, flushed and synced, so a crash leaves at most a torn last line, which `read_log`
skips. The latest record of a name is what counts: a rerun skips rows whose latest record is
"ok" for the same image and settings, and retries "failed" ones when asked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LOG_NAME = "batch.jsonl"
OK, FAILED = "ok", "failed"


def read_log(out: Path) -> dict[str, dict]:
    """The latest record of every row name in `out`'s log ({} when there is none)."""
    path = Path(out) / LOG_NAME
    latest = {}
    if not path.is_file():
        return latest
    with path.open() as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a torn last line from a crash
                continue
            if isinstance(record, dict) and "name" in record:
                latest[record["name"]] = record
    return latest


class BatchLog:
    """Appends records to `out`/batch.jsonl."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self.path.is_file() and self.path.stat().st_size and not _ends_line(self.path)
        self._handle = self.path.open("a")
        if torn:  # a torn line from a crash must not swallow the next record
            self._handle.write("\n")

    def append(self, record: dict) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _ends_line(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
