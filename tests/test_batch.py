"""`python -m engine batch`: rows from folders and manifests, the manifest log, resuming,
failures that fail only their row, Ctrl+C, and byte-identical outputs with 1 or 2 workers,
embedded or on a local Ray cluster with a worker killed mid-run (shipped models, 2 steps)."""

import json
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.batch.compute import PipelineSet
from engine.batch.embedded import EmbeddedExecutor
from engine.batch.log import LOG_NAME, BatchLog, read_log
from engine.batch.rows import BatchInputError, read_rows
from engine.batch.runner import run_batch
from engine.cli import main
from engine.demo import DEMO_IMAGE
from engine.pipelines.outputs import read_asset
from engine.pipelines.registry import DEFAULT_MODELS

GOOD = ["chair", "mirrored", "grey", "small", "three"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Five usable images (the demo chair, mirrored, on a grey RGB background, small) and
    one corrupt file, plus a manifest giving two rows their own settings."""
    folder = tmp_path_factory.mktemp("batch_in")
    chair = Image.open(DEMO_IMAGE).convert("RGBA")
    chair.save(folder / "chair.png")
    chair.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirrored.png")
    grey = Image.new("RGBA", chair.size, (128, 128, 128, 255))
    grey.alpha_composite(chair)
    grey.convert("RGB").save(folder / "grey.jpg", quality=95)
    chair.resize((160, 160)).save(folder / "small.webp")
    chair.save(folder / "three.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image: ignored")
    return folder


def manifest(folder: Path, path: Path, names: tuple = ()) -> Path:
    """Every image of `folder` (or those named) at 2 parts and 2 steps; `three` asks for 3
    parts and seed 5."""
    lines = []
    for image in sorted(folder.iterdir()):
        if image.suffix == ".txt" or (names and image.stem not in names):
            continue
        row = {"image": str(image), "parts": 2, "steps": 2}
        if image.stem == "three":
            row.update(parts=3, seed=5)
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


def part_arrays(out: Path, name: str) -> list[np.ndarray]:
    asset = read_asset(out / name)
    return [a for p in asset.parts for a in (p.vertices, p.faces, p.transform, p.latent)]


def assert_same_outputs(a: Path, b: Path, names=GOOD) -> None:
    for name in names:
        left, right = part_arrays(a, name), part_arrays(b, name)
        assert len(left) == len(right), name
        for x, y in zip(left, right):
            assert x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes(), name


def embedded(workers: int) -> EmbeddedExecutor:
    return EmbeddedExecutor(PipelineSet(DEFAULT_MODELS, "cpu"), workers)


@pytest.fixture(scope="module")
def two_workers(images, tmp_path_factory) -> Path:
    """The embedded run with 2 rows at a time that the other runs are compared with."""
    out = tmp_path_factory.mktemp("batch_two")
    rows = read_rows(manifest(images, out.parent / "two.jsonl"), parts=None, seed=0,
                     pipeline="partrag")
    summary = run_batch(rows, out, embedded(2), show_progress=False)
    assert (summary.ok, summary.failed, summary.skipped, summary.stopped) == (5, 1, 0, False)
    return out


def test_rows_from_folder_csv_and_jsonl(images, tmp_path):
    rows = read_rows(images, parts=None, seed=7, pipeline="partrag")
    assert [r.name for r in rows] == ["chair", "corrupt", "grey", "mirrored", "small", "three"]
    assert all(r.parts is None and r.seed == 7 and not r.problem for r in rows)

    csv = tmp_path / "rows.csv"
    csv.write_text("image,name,parts,seed,guidance\n"
                   f"{images / 'chair.png'},,4,,\n"
                   "chair.png,,auto,3,2.5\n"  # relative to the manifest's folder
                   "chair.png,,many,x,\n"
                   "chair.png,../up,0,,\n")
    rows = read_rows(csv, parts=2, seed=1, pipeline="partrag")
    assert [r.name for r in rows] == ["chair", "chair-2", "chair-3", "row-4"]
    assert (rows[0].parts, rows[0].seed, rows[0].problem) == (4, 1, "")
    assert rows[1].image == tmp_path / "chair.png"
    assert (rows[1].parts, rows[1].seed, rows[1].overrides) == (None, 3, {"guidance": 2.5})
    assert "parts 'many' is not a whole number" in rows[2].problem
    assert "seed 'x'" in rows[2].problem
    assert "not a folder name" in rows[3].problem and "at least 1" in rows[3].problem

    bad = tmp_path / "bad.csv"
    bad.write_text("image,part\nchair.png,2\n")
    with pytest.raises(BatchInputError, match="unknown column.*part"):
        read_rows(bad, parts=None, seed=0, pipeline="partrag")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"image": "a.png"}\n{"image": \n')
    with pytest.raises(BatchInputError, match="line 2 is not JSON"):
        read_rows(broken, parts=None, seed=0, pipeline="partrag")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchInputError, match="holds no"):
        read_rows(tmp_path / "empty", parts=None, seed=0, pipeline="partrag")


def test_log_keeps_the_latest_record_and_survives_a_torn_line(tmp_path):
    log = BatchLog(tmp_path)
    log.append({"name": "a", "status": "failed"})
    log.append({"name": "a", "status": "ok"})
    log.close()
    with (tmp_path / LOG_NAME).open("a") as handle:
        handle.write('{"name": "b", "sta')  # a crash mid-write
    log = BatchLog(tmp_path)
    log.append({"name": "c", "status": "ok"})
    log.close()
    assert {k: v["status"] for k, v in read_log(tmp_path).items()} == {"a": "ok", "c": "ok"}


def test_embedded_batch_writes_every_good_row_and_records_the_bad_one(two_workers, images):
    records = read_log(two_workers)
    assert {n: r["status"] for n, r in records.items()} == {
        **{n: "ok" for n in GOOD}, "corrupt": "failed"}
    assert records["corrupt"]["code"] == "invalid_image"
    assert records["three"]["parts"] == 3 and records["chair"]["parts"] == 2
    for name in GOOD:
        files = {p.name for p in (two_workers / name).iterdir()}
        assert {"object.glb", "parts.json", "preview.png", "latents.safetensors",
                "reference.png", "retrieved.json", "part_00.glb"} <= files
        assert records[name]["seconds"]["compute"] > 0
    assert not (two_workers / "corrupt").exists()
    assert not [p for p in two_workers.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("workers, names", [(1, ("grey", "three")),
                                             (4, ("chair", "grey", "small", "three"))])
def test_other_worker_counts_give_byte_identical_outputs(two_workers, images, tmp_path,
                                                         workers, names):
    rows = read_rows(manifest(images, tmp_path / "m.jsonl", names), parts=None, seed=0,
                     pipeline="partrag")
    summary = run_batch(rows, tmp_path / "out", embedded(workers), show_progress=False)
    assert (summary.ok, summary.failed) == (len(names), 0)
    assert_same_outputs(two_workers, tmp_path / "out", names)


def test_rerun_skips_finished_rows_and_retries_failed_ones_on_request(two_workers, images,
                                                                      tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_workers, out)
    rows = read_rows(manifest(images, tmp_path / "m.jsonl"), parts=None, seed=0,
                     pipeline="partrag")
    again = run_batch(rows, out, embedded(2), show_progress=False)
    assert (again.ok, again.failed, again.skipped) == (0, 0, 6)
    retried = run_batch(rows, out, embedded(2), retry_failed=True, show_progress=False)
    assert (retried.ok, retried.failed, retried.skipped) == (0, 1, 5)
    # changed settings (or image bytes) run again
    changed = [replace(r, seed=9) if r.name == "chair" else r for r in rows]
    rerun = run_batch(changed, out, embedded(2), show_progress=False)
    assert (rerun.ok, rerun.skipped) == (1, 5)
    assert read_log(out)["chair"]["params"]["seed"] == 9


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(images, tmp_path):
    rows = read_rows(manifest(images, tmp_path / "m.jsonl", ("chair", "corrupt", "small")),
                     parts=None, seed=0, pipeline="partrag")
    out = tmp_path / "out"

    def interrupt(done, total, message):
        raise KeyboardInterrupt  # what Ctrl+C raises in the main thread

    stopped = run_batch(rows, out, embedded(2), progress=interrupt, show_progress=False)
    assert stopped.stopped and stopped.ok + stopped.failed == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written folder
    resumed = run_batch(rows, out, embedded(2), show_progress=False)
    assert not resumed.stopped
    assert resumed.skipped == 1 and resumed.ok + resumed.failed == 2
    assert len(read_log(out)) == 3


def test_cli_refuses_what_it_cannot_run(images, tmp_path, capsys):
    assert main(["batch", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["batch", str(images), "--out", str(tmp_path / "o"), "--pipeline",
                 "unipart", "--models", str(tmp_path / "no_models")]) == 2
    assert "no model bundle" in capsys.readouterr().err
    assert main(["batch", str(images), "--out", str(tmp_path / "o"), "--pipeline",
                 "nope"]) == 2
    assert "no model bundle" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_runs_a_manifest_and_exits_1_when_a_row_failed(images, tmp_path, capsys):
    listed = tmp_path / "m.csv"
    listed.write_text(f"image,name,steps,parts\n{images / 'chair.png'},one,1,1\n"
                      f"{images / 'missing.png'},gone,1,1\n")
    assert main(["batch", str(listed), "--out", str(tmp_path / "o")]) == 1
    assert "1 ok, 1 failed" in capsys.readouterr().out
    records = read_log(tmp_path / "o")
    assert records["gone"]["code"] == "missing_image"
    assert len(read_asset(tmp_path / "o" / "one").parts) == 1


def test_ray_batch_survives_a_killed_worker_with_identical_outputs(two_workers, images,
                                                                   tmp_path):
    ray = pytest.importorskip("ray")
    from engine.batch.ray_executor import ACTOR_PREFIX, NAMESPACE, RayExecutor

    rows = read_rows(manifest(images, tmp_path / "m.jsonl"), parts=None, seed=0,
                     pipeline="partrag")
    out = tmp_path / "out"
    executor = RayExecutor("local", DEFAULT_MODELS, workers=2, max_retries=2, device="cpu")
    killed = threading.Event()

    def kill_the_busy_worker(done, total, message):
        """After the first row, kill the worker that did not compute it: it is mid-row."""
        if killed.is_set():
            return
        finished_on = list(read_log(out).values())[-1]["worker"].rsplit("/", 1)[1]
        busy = f"{ACTOR_PREFIX}1" if finished_on == f"{ACTOR_PREFIX}0" else f"{ACTOR_PREFIX}0"
        ray.kill(ray.get_actor(busy, namespace=NAMESPACE))
        killed.set()

    summary = run_batch(rows, out, executor, progress=kill_the_busy_worker, show_progress=False)
    assert killed.is_set()
    assert (summary.ok, summary.failed, summary.stopped) == (5, 1, False)
    records = read_log(out)
    assert records["corrupt"]["code"] == "invalid_image"
    assert max(r["attempts"] for r in records.values()) == 2  # the killed worker's row ran again
    assert all(r["worker"].startswith("ray/") for r in records.values())
    assert_same_outputs(two_workers, out)


def test_the_engine_never_imports_ray_unless_asked(tmp_path):
    """`serve`, `generate` and an embedded `batch` start without Ray (it is imported only
    for --ray)."""
    import subprocess
    import sys

    code = ("import sys\nfrom engine.cli import main\n"
            f"main(['batch', {str(tmp_path / 'none')!r}, '--out', {str(tmp_path / 'o')!r}])\n"
            "from engine.server import bundle_service, server\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
