#!/usr/bin/env python3
"""Partsmith's single entry point: set-up, tests, the demo.

    python build.py setup   create .venv and install everything pinned in requirements.txt
    python build.py test    set up if needed, then run the whole test suite
    python build.py demo    set up if needed, then run the main job (see README)

Runs under any Python 3; the project itself needs CPython 3.11 (the bpy wheel is built for it),
which is used for .venv: this interpreter if it is 3.11, else `python3.11` from PATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / "partsmith-setup.json"
REQUIRED = (3, 11)
# Where a CUDA build of the pinned torch comes from when an NVIDIA GPU is present.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu130"


class BuildError(Exception):
    """A set-up problem the user can act on; printed without a traceback."""


def say(message: str) -> None:
    print(f"[build] {message}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_python311() -> str:
    if sys.version_info[:2] == REQUIRED:
        return sys.executable
    found = shutil.which("python3.11")
    if found:
        return found
    raise BuildError(
        f"Python 3.11 required, found {sys.version_info[0]}.{sys.version_info[1]} "
        f"({sys.executable}) and no python3.11 on PATH. Install Python 3.11 and run "
        "`python3.11 build.py setup`.")


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def wanted_state() -> dict:
    """What a finished set-up looks like; any change triggers a reinstall."""
    return {
        "requirements_sha256": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest(),
        "python": list(REQUIRED),
        "torch": "cuda" if has_nvidia_gpu() else "cpu",
    }


def is_set_up(state: dict) -> bool:
    if not (venv_python().exists() and STAMP.exists()):
        return False
    try:
        return json.loads(STAMP.read_text()) == state
    except (OSError, ValueError):
        return False


def run(cmd: list[str], what: str) -> None:
    say(what)
    started = time.time()
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}): {' '.join(map(str, cmd))}")
    say(f"  done in {time.time() - started:.0f} s")


def pinned(name: str) -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        if line.split("==")[0].strip().lower() == name:
            return line.strip()
    raise BuildError(f"{name} is not pinned in {REQUIREMENTS.name}")


def setup() -> None:
    state = wanted_state()
    if is_set_up(state):
        say(f"set-up is up to date ({VENV.name}, torch {state['torch']})")
        return
    python = find_python311()
    if not venv_python().exists():
        run([python, "-m", "venv", str(VENV)], f"creating {VENV.name} with {python}")
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check"]
    torch = pinned("torch")
    if state["torch"] == "cuda":
        run(pip + ["--index-url", TORCH_CUDA_INDEX, torch], f"installing {torch} (CUDA build)")
    else:
        run(pip + [torch], f"installing {torch} (CPU build)")
    run(pip + ["-r", str(REQUIREMENTS)], f"installing the pinned dependencies ({REQUIREMENTS.name})")
    tmp = STAMP.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, STAMP)
    say("set-up complete")


def in_venv(args: list[str]) -> int:
    return subprocess.run([str(venv_python()), *args], cwd=ROOT).returncode


def test(extra: list[str]) -> int:
    setup()
    say("running the test suite")
    return in_venv(["-m", "pytest", "-q", "tests", *extra])


def demo(extra: list[str]) -> int:
    setup()
    return in_venv(["-m", "engine", "demo", *extra])


def main(argv: list[str]) -> int:
    commands = {"setup": lambda extra: setup() or 0, "test": test, "demo": demo}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except BuildError as error:
        print(f"[build] error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
