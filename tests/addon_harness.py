"""Headless Blender (the `bpy` module) with the built Partsmith extension installed, for
the add-on tests. The extension is built and installed once per test process."""

import functools
import importlib
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import build  # noqa: E402

from addon_geometry import grid_mesh  # noqa: E402,F401
from bridge_harness import EngineProcess, png_bytes  # noqa: E402,F401


@functools.cache
def installed() -> SimpleNamespace:
    """Build the extension zip (no wheels: this interpreter has pyzmq), install it into a
    temporary user repository and enable it; returns its modules."""
    folder = Path(tempfile.mkdtemp(prefix="partsmith-addon-"))
    package = build.build_addon(folder / "dist", [])
    bpy.ops.preferences.extension_repo_add(name="Partsmith Tests", type="LOCAL",
                                          custom_directory=str(folder / "repo"),
                                          use_custom_directory=True)
    repo = bpy.context.preferences.extensions.repos[-1].module
    result = bpy.ops.extensions.package_install_files(filepath=str(package), repo=repo,
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    name = f"bl_ext.{repo}.partsmith"
    modules = {m: importlib.import_module(f"{name}.{m}")
               for m in ("api", "scene", "engine_link", "operators")}
    return SimpleNamespace(name=name, folder=folder, package=package, **modules)


@pytest.fixture(scope="session")
def addon():
    return installed()


@pytest.fixture
def prefs(addon):
    """The add-on preferences, restored after the test."""
    preferences = bpy.context.preferences.addons[addon.name].preferences
    saved = {key: getattr(preferences, key) for key in
             ("address", "timeout", "keys", "auto_start", "project", "python", "engine_args")}
    yield preferences
    for key, value in saved.items():
        setattr(preferences, key, value)


@pytest.fixture
def empty_scene(addon):
    """A scene with no objects, meshes or materials; the add-on's UI state cleared."""
    bpy.ops.wm.read_homefile(use_empty=True)
    for collection in (bpy.data.objects, bpy.data.meshes, bpy.data.materials):
        for block in list(collection):
            collection.remove(block)
    addon.api.Current.task, addon.api.Current.error = None, ""
    return bpy.context.scene


def scene_snapshot() -> tuple:
    """Everything a failed generation must leave unchanged."""
    return tuple(sorted(block.name for block in collection) for collection in
                 (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.collections))

