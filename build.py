#!/usr/bin/env python3
"""Partsmith's single entry point: set-up, tests, the demo.

    python build.py setup   create .venv and install everything pinned in requirements.txt
    python build.py test    set up if needed, then run the whole test suite
    python build.py demo    set up if needed, then run the main job (see README)
    python build.py addon   build the Blender extension into dist/ (see blender_addon/README.md)
    python build.py bench-addon   figures of the add-on: scene building and overhead

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


# The Blender extension: pyzmq wheels for Blender's Pythons on each platform
# (Blender platform -> pip platform tag), cached in build/ (git-ignored).
ADDON_PYTHONS = ("3.11", "3.13")
ADDON_PLATFORMS = {"linux-x64": "manylinux_2_28_x86_64", "windows-x64": "win_amd64",
                   "windows-arm64": "win_arm64", "macos-arm64": "macosx_11_0_arm64",
                   "macos-x64": "macosx_10_15_x86_64"}
WHEEL_CACHE = ROOT / "build" / "wheels"


def blender_ext() -> tuple[list[str], list[str]]:
    """Blender's own extension tool from the bpy wheel (it runs under plain Python), and
    the tag list Blender validates against."""
    code = "import importlib.util as u; print(u.find_spec('bpy').submodule_search_locations[0])"
    found = subprocess.run([str(venv_python()), "-c", code], capture_output=True, text=True)
    bpy_dir = Path(found.stdout.strip())
    tools = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    tags = sorted(bpy_dir.glob("*/scripts/modules/_bpy_internal/extensions/tags.py"))
    if found.returncode != 0 or not tools or not tags:
        raise BuildError(f"Blender's extension tool not found in the bpy package ({bpy_dir})")
    return [str(venv_python()), str(tools[-1])], ["--valid-tags", str(tags[-1])]


def pyzmq_wheels() -> list[Path]:
    """The pinned pyzmq's wheels for every add-on Python and platform (downloaded once)."""
    wheels = {}  # by file name: macOS universal2 wheels serve both Mac platforms
    for python in ADDON_PYTHONS:
        for tag in ADDON_PLATFORMS.values():
            folder = WHEEL_CACHE / f"py{python}-{tag}"
            if not any(folder.glob("*.whl")):
                run([str(venv_python()), "-m", "pip", "download", "--disable-pip-version-check",
                     "-q", pinned("pyzmq"), "--only-binary=:all:", "--no-deps", "--platform", tag,
                     "--python-version", python, "-d", str(folder)],
                    f"downloading {pinned('pyzmq')} for Python {python} on {tag}")
            wheels.update((wheel.name, wheel) for wheel in folder.glob("*.whl"))
    return [wheels[name] for name in sorted(wheels)]


def build_addon(output_dir: Path, wheels: list[Path]) -> Path:
    """Stage blender_addon/ + a vendored copy of bridge/ (+ wheels) and build the
    extension zip with Blender's tool, then validate it; returns the zip."""
    stage = ROOT / "build" / "addon" / output_dir.name / "partsmith"
    shutil.rmtree(stage, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "blender_addon", stage, ignore=ignore)
    shutil.copytree(ROOT / "bridge", stage / "bridge", ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "*.md"))
    manifest = (stage / "blender_manifest.toml").read_text()
    if wheels:
        (stage / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, stage / "wheels")
        names = ", ".join(f'"./wheels/{wheel.name}"' for wheel in wheels)
        platforms = ", ".join(f'"{name}"' for name in ADDON_PLATFORMS)
        manifest = manifest.replace("\n[permissions]", f"\nplatforms = [{platforms}]\n"
                                    f"wheels = [{names}]\n\n[permissions]", 1)
    (stage / "blender_manifest.toml").write_text(manifest)
    output_dir.mkdir(parents=True, exist_ok=True)
    tool, tags = blender_ext()
    version = next(line.split('"')[1] for line in manifest.splitlines()
                   if line.startswith("version"))
    package = output_dir / f"partsmith-{version}.zip"
    run([*tool, "build", "--source-dir", str(stage), "--output-filepath", str(package), *tags],
        f"building the extension {package.name}")
    run([*tool, "validate", str(package), *tags], f"validating {package.name}")
    return package


def addon(extra: list[str]) -> int:
    setup()
    package = build_addon(ROOT / "dist", pyzmq_wheels())
    say(f"extension: {package} ({package.stat().st_size / 1e6:.1f} MB)")
    return 0


def bench_addon(extra: list[str]) -> int:
    setup()
    return in_venv(["-m", "pytest", "-q", "-s", "tests/test_addon_figures.py", *extra])


def main(argv: list[str]) -> int:
    commands = {"setup": lambda extra: setup() or 0, "test": test, "demo": demo,
                "addon": addon, "bench-addon": bench_addon}
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
