import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def engine(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_data_build_on_two_workers_prints_throughput(tmp_path):
    out = tmp_path / "ds"
    result = engine("data", "build", "--out", str(out), "--train", "3", "--val", "1", "--test", "2",
                    "--views", "1", "--size", "64", "--samples", "512", "--seed", "3", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "objects/s with 1 views each (2 workers)" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [len(manifest["splits"][s]) for s in ("train", "val", "test")] == [3, 1, 2]
    for split, records in manifest["splits"].items():
        for record in records:
            assert (out / split / record["name"] / "view_00.png").exists()
    assert not list(out.rglob(".tmp-*"))


def test_data_build_rejects_bad_counts(tmp_path):
    result = engine("data", "build", "--out", str(tmp_path / "x"), "--train", "-1")
    assert result.returncode != 0
    assert "--train must be at least 0, got -1" in result.stderr
    assert not (tmp_path / "x").exists()


def test_data_sheet_writes_both_pictures(tmp_path):
    out = tmp_path / "ds"
    assert engine("data", "build", "--out", str(out), "--train", "2", "--val", "0", "--test", "0",
                  "--views", "1", "--size", "64", "--samples", "256", "--workers", "1").returncode == 0
    result = engine("data", "sheet", str(out), "--out", str(tmp_path / "pics"), "--count", "2")
    assert result.returncode == 0, result.stderr
    from PIL import Image

    sheet = Image.open(tmp_path / "pics" / "contact_sheet.png")
    assert sheet.width > 2 * 100
    assert Image.open(tmp_path / "pics" / "part_counts.png").height > 100
    assert Image.open(tmp_path / "pics" / "reference_views.png").size == sheet.size
