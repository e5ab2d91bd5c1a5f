import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import build  # noqa: E402


def test_second_setup_is_a_fast_no_op():
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "build.py", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "set-up is up to date" in result.stdout
    assert time.perf_counter() - started < 5.0


def test_wrong_python_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(build.sys, "version_info", (3, 9, 18, "final", 0))
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(build.BuildError, match=r"Python 3\.11 required, found 3\.9"):
        build.find_python311()


def test_unknown_command_prints_usage():
    result = subprocess.run([sys.executable, "build.py", "frobnicate"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "python build.py test" in result.stdout


def test_every_dependency_is_pinned_exactly():
    lines = [l for l in (ROOT / "requirements.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert lines and all("==" in l for l in lines)
    names = {l.split("==")[0].lower() for l in lines}
    assert {"torch", "bpy", "numpy", "pyzmq"} <= names
