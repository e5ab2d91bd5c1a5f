"""A batch run: rows handed to an executor, every result written by this process.

Per row, DIR/<name>/ holds what `engine generate` writes (plus asset.blend with `blend`),
written into DIR/.<name>.partial first and renamed into place, so a folder that exists is
whole. Every finished row appends its record to DIR/batch.jsonl (log.py). A rerun skips the
rows whose latest record is "ok" for the same image bytes and settings, and the failed ones
unless `retry_failed`; whatever stopped a run (Ctrl+C, a cancelled bridge job), a rerun
resumes it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from engine.batch.compute import Outcome, RowJob
from engine.batch.embedded import StopSignal
from engine.batch.log import FAILED, OK, BatchLog, read_log
from engine.batch.rows import Row, image_digest

BLEND_NAME = "asset.blend"


@dataclass
class BatchSummary:
    rows: int
    ok: int = 0  # finished in this run
    failed: int = 0  # failed in this run
    skipped: int = 0  # finished (or failed) before and not run again
    stopped: bool = False  # the run was stopped before every row ran
    seconds: float = 0.0
    out: str = ""

    @property
    def images_per_minute(self) -> float:
        done = self.ok + self.failed
        return 60.0 * done / self.seconds if self.seconds > 0 and done else 0.0

    def as_dict(self) -> dict:
        return {"rows": self.rows, "ok": self.ok, "failed": self.failed,
                "skipped": self.skipped, "stopped": self.stopped,
                "seconds": round(self.seconds, 3),
                "images_per_minute": round(self.images_per_minute, 2), "out": self.out}


def finished(row: Row, digest: str, record: dict | None, retry_failed: bool,
             blend: bool) -> bool:
    """Whether a row's latest record stands for this image and these settings (and has its
    asset.blend when one is asked for)."""
    if record is None or record.get("image_sha256") != digest:
        return False
    if record.get("params") != row.params():
        return False
    if record["status"] == OK:
        return record.get("blend", False) or not blend
    return not retry_failed


def run_batch(rows: list[Row], out: Path, executor, *, retry_failed: bool = False,
              blend: bool = False, progress: Callable[[int, int, str], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              show_progress: bool = True) -> BatchSummary:
    """Run every row not finished before through `executor` (closed at the end) and write
    the results into `out`. `progress(done, total, message)` after every row (raising stops the run, as Ctrl+C
    does); `should_stop()` is polled while rows run. Ctrl+C stops the run like `should_stop`:
    rows written so far are recorded, and the summary says it stopped."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(len(rows), out=str(out))
    latest = read_log(out)
    log, stop = BatchLog(out), StopSignal(should_stop)
    bar = tqdm(total=len(rows), unit="img", desc="batch", disable=not show_progress)
    started = time.perf_counter()
    renderer = _LazyRenderer()

    by_name, digests = {row.name: row for row in rows}, {}

    def count(outcome: Outcome) -> None:
        if outcome is None:
            summary.skipped += 1
        elif outcome.ok:
            summary.ok += 1
        else:
            summary.failed += 1
        summary.seconds = time.perf_counter() - started
        bar.update()
        bar.set_postfix(ok=summary.ok, failed=summary.failed,
                        per_min=f"{summary.images_per_minute:.1f}")

    def unreadable(row: Row, error: OSError) -> None:
        outcome = Outcome(row.name, code="missing_image",
                          message=f"cannot read {row.image}: {error.strerror or error}")
        log.append(_record(row, "", outcome))
        count(outcome)

    results = executor.run(_jobs(rows, latest, retry_failed, blend, digests, count, unreadable),
                           stop)
    try:
        for outcome in results:
            row = by_name[outcome.name]
            record = _record(row, digests.pop(row.name), outcome,
                             _write(outcome, out, renderer, blend))
            log.append({**record, "blend": blend} if outcome.ok else record)
            count(outcome)
            if progress is not None:
                progress(summary.ok + summary.failed + summary.skipped, len(rows),
                         f"{outcome.name}: {'ok' if outcome.ok else outcome.code}")
    except KeyboardInterrupt:  # Ctrl+C: what finished is written and recorded; a rerun resumes
        stop.set()
    finally:
        results.close()
        executor.close()
        renderer.close()
        log.close()
        bar.close()
        summary.seconds = time.perf_counter() - started
    summary.stopped = stop.is_set() or summary.ok + summary.failed + summary.skipped < len(rows)
    return summary


def _jobs(rows: list[Row], latest: dict, retry_failed: bool, blend: bool, digests: dict,
          count, unreadable) -> Iterator[RowJob]:
    """The rows still to run, each with its image read when it is about to be handed out
    (memory stays bounded however many rows); `count(None)` for a row skipped as finished,
    `unreadable(row, error)` for a file that cannot be read."""
    for row in rows:
        try:
            data = row.image.read_bytes()
        except OSError as error:
            unreadable(row, error)
            continue
        digest = image_digest(data)
        if finished(row, digest, latest.get(row.name), retry_failed, blend):
            count(None)
            continue
        digests[row.name] = digest
        yield RowJob(row, data, digest)


def _write(outcome: Outcome, out: Path, renderer, blend: bool) -> float:
    """Write an ok row's folder atomically (a row that cannot be written fails, with
    write_failed, and the batch goes on); returns the seconds it took."""
    started = time.perf_counter()
    if outcome.ok:
        try:
            _write_folder(outcome, out, renderer, blend)
        except Exception as error:  # disk full, a blend that would not build
            outcome.generation, outcome.code = None, "write_failed"
            outcome.message = f"{type(error).__name__}: {error}"
    return time.perf_counter() - started


def _write_folder(outcome: Outcome, out: Path, renderer, blend: bool) -> None:
    from engine.pipelines.outputs import write_generation

    generation = outcome.generation
    final, partial = out / outcome.name, out / f".{outcome.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        write_generation(generation, partial, preview=not blend,
                         renderer=None if blend else renderer())
        if blend:
            from engine.render.blend import write_blend

            write_blend(generation.parts, partial / BLEND_NAME, partial / "preview.png",
                        asset_id=outcome.name, parameters=generation.params,
                        retrieved=generation.retrieved)
    except BaseException:  # nothing half-written stays behind, Ctrl+C included
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        stale = out / f".{outcome.name}.stale"
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(final, stale)
        os.replace(partial, final)
        shutil.rmtree(stale)
    else:
        os.replace(partial, final)


def _record(row: Row, digest: str, outcome: Outcome, write_seconds: float = 0.0) -> dict:
    record = {"name": row.name, "image": str(row.image), "image_sha256": digest,
              "params": row.params(), "status": OK if outcome.ok else FAILED,
              "attempts": outcome.attempts, "worker": outcome.worker,
              "seconds": {"compute": round(outcome.seconds, 3), "write": round(write_seconds, 3),
                          **{k: round(v, 3) for k, v in outcome.timings.items()}},
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if outcome.ok:
        generation = outcome.generation
        record["parts"] = len(generation.parts)
        record["empty_parts"] = [p.index for p, r in zip(generation.parts, generation.reports)
                                 if r.get("empty")]
    else:
        record["code"], record["message"] = outcome.code, outcome.message
    return record


class _LazyRenderer:
    """The previews' renderer, started on the first preview (a batch of failures, or one
    with --blend, which renders in its own worker, never starts it)."""

    def __init__(self):
        self._renderer = None

    def __call__(self):
        if self._renderer is None:
            from engine.render import Renderer

            self._renderer = Renderer()
        return self._renderer

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
