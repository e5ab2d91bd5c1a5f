"""The add-on's single link to the engine: the bridge client, an optional auto-started
local engine process, and the engine's self-description (its `hello`).

Nothing here blocks Blender: requests return Jobs, and `poll()` (driven by a timer in the
UI, called directly by scripts and tests) folds finished replies into module state.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy

from .bridge import DEFAULT_ADDRESS, PROTOCOL_VERSION, EngineClient, EngineError

ADDON = __package__


@dataclass(frozen=True)
class Settings:
    address: str = DEFAULT_ADDRESS
    timeout: float = 10.0
    keys: str = ""  # client key folder for a CurveZMQ (remote) engine
    auto_start: bool = False
    project: str = ""  # Partsmith checkout holding engine/ and .venv/
    python: str = ""  # empty: the project's .venv interpreter
    engine_args: str = ""  # extra `engine serve` arguments
    uv_unwrap: bool = True  # a UV map on every part the add-on builds


class State:
    """Module state, in one place so that `close()` can reset all of it."""

    client: EngineClient | None = None
    client_settings: tuple = ()
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    hello_job = None
    info: dict | None = None  # the last hello reply
    problem: str = ""  # why the engine is not connected, for the panel


def settings() -> Settings:
    """The add-on preferences, or defaults when the add-on is not registered."""
    addon = bpy.context.preferences.addons.get(ADDON)
    if addon is None or addon.preferences is None:
        return Settings()
    prefs = addon.preferences
    return Settings(prefs.address, prefs.timeout, bpy.path.abspath(prefs.keys),
                    prefs.auto_start, bpy.path.abspath(prefs.project),
                    bpy.path.abspath(prefs.python), prefs.engine_args, prefs.uv_unwrap)


def client() -> EngineClient:
    """The client for the current settings (a new one when they changed)."""
    current = settings()
    key = (current.address, current.timeout, current.keys)
    if State.client is None or State.client_settings != key:
        if State.client is not None:
            State.client.close()
        State.client = EngineClient(current.address, timeout=current.timeout,
                                    keys=current.keys or None)
        State.client_settings = key
        State.info, State.hello_job = None, None
    return State.client


def refresh() -> None:
    """Ask the engine to describe itself; `poll()` picks up the answer."""
    if State.hello_job is None or State.hello_job.done:
        State.hello_job = client().submit("hello", {"client": "partsmith blender add-on"})


def poll() -> bool:
    """Fold a finished hello into `State`; True while one is still pending."""
    job = State.hello_job
    if job is None:
        return False
    if not job.done:
        return True
    State.hello_job = None
    try:
        info = job.result(0)
    except EngineError as error:
        State.info, State.problem = None, describe(error)
        return False
    if info.get("protocol") != PROTOCOL_VERSION:
        State.info = None
        State.problem = describe(EngineError("unsupported_protocol", ""))
    else:
        State.info, State.problem = info, ""
    return False


def hello(timeout: float | None = None) -> dict:
    """Blocking refresh, for scripts; raises EngineError when not connected."""
    refresh()
    State.hello_job.result(timeout)
    poll()
    if State.info is None:
        raise EngineError("no_engine", State.problem)
    return State.info


def generate_models() -> list[str]:
    """Names of the generate pipelines the engine reports (empty until connected)."""
    models = (State.info or {}).get("models", [])
    return [model["name"] for model in models if model.get("operation") == "generate"]


# ---------------------------------------------------------------------- local engine

def engine_command(current: Settings) -> list[str]:
    """`python -m engine serve` for the project's interpreter; why-not as ValueError."""
    if not current.project:
        raise ValueError("set the Partsmith project folder in the add-on preferences to "
                         "start a local engine")
    project = Path(current.project)
    python = Path(current.python) if current.python else project / (
        ".venv/Scripts/python.exe" if os.name == "nt" else ".venv/bin/python")
    if not python.exists():
        raise ValueError(f"no Python interpreter at {python} (run `python build.py setup` in "
                         f"{project}, or set the engine's Python in the preferences)")
    return [str(python), "-m", "engine", "serve", "--address", current.address,
            *shlex.split(current.engine_args)]


def engine_running() -> bool:
    return State.process is not None and State.process.poll() is None


def start_engine() -> None:
    """Start a local engine at the configured address; its output goes to a log file."""
    if engine_running():
        return
    current = settings()
    command = engine_command(current)
    State.log_path = Path(tempfile.gettempdir()) / f"partsmith-engine-{os.getpid()}.log"
    with open(State.log_path, "wb") as log:
        State.process = subprocess.Popen(command, cwd=current.project, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
    State.info, State.problem = None, "engine starting"
    refresh()


def ensure_engine() -> None:
    """Auto-start: a local engine when the preferences ask for one and none is known."""
    if settings().auto_start and State.info is None and not engine_running():
        start_engine()


def stop_engine() -> None:
    """Ask the engine to shut down; make sure a process we started is gone."""
    if State.client is not None and (State.info is not None or engine_running()):
        try:
            State.client.submit("shutdown").result(timeout=5.0)
        except (EngineError, TimeoutError):
            pass  # already gone or not answering: terminate below
    if State.process is not None:
        try:
            State.process.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            State.process.terminate()
            State.process.wait(timeout=10.0)
    State.process, State.info, State.hello_job = None, None, None
    State.problem = "engine stopped"


def close() -> None:
    """Release everything (on unregister): client thread, our engine process, state."""
    if engine_running():
        stop_engine()
    if State.client is not None:
        State.client.close()
    State.client, State.client_settings, State.process = None, (), None
    State.hello_job, State.info, State.problem = None, None, ""


# ---------------------------------------------------------------------- messages

def describe(error: EngineError) -> str:
    """A sentence the user can act on, for any bridge error."""
    address = State.client.address if State.client else settings().address
    log = f" Engine log: {State.log_path}." if State.log_path else ""
    messages = {
        "no_engine": f"No engine answered at {address}. Start it (Start Engine, or "
                     f"`python -m engine serve --address {address}` in the Partsmith folder) "
                     f"or check the address in the preferences.",
        "engine_died": f"The engine stopped responding during the job (crashed or killed); "
                       f"nothing was added to the scene.{log}",
        "unsupported_protocol": f"The engine speaks a different protocol version than this "
                                f"add-on (v{PROTOCOL_VERSION}); install both from the same "
                                f"release.",
        "invalid_image": f"The reference image cannot be used: {error.message}",
        "image_too_large": f"The reference image is too large: {error.message}",
        "model_unavailable": f"The engine has no model for this: {error.message}",
        "no_foreground": f"No object found in the reference image: {error.message}",
        "invalid_part_count": f"Choose another part count: {error.message}",
        "cancelled": "Generation cancelled.",
    }
    return messages.get(error.code, f"{error.message} ({error.code})")
