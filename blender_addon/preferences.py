"""Add-on preferences: where the engine is, whether to start one, how long to wait."""

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

from .bridge import DEFAULT_ADDRESS


class PartsmithPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    address: StringProperty(
        name="Engine Address", default=DEFAULT_ADDRESS,
        description="ZeroMQ address of the Partsmith engine (tcp://host:port)")
    timeout: FloatProperty(
        name="Connect Timeout", default=10.0, min=1.0, max=600.0, unit="TIME_ABSOLUTE",
        description="How long a request waits for an engine that may not be running. Once "
        "it answers, heartbeats notice a dead engine within 3 s")
    keys: StringProperty(
        name="Client Keys", subtype="DIR_PATH",
        description="CurveZMQ client key folder for a remote engine (made by `python -m "
        "engine keys`); leave empty for a local engine")
    auto_start: BoolProperty(
        name="Start Local Engine Automatically", default=False,
        description="Start an engine at the address above when Generate finds none")
    project: StringProperty(
        name="Partsmith Project", subtype="DIR_PATH",
        description="The Partsmith folder holding engine/ and .venv/ (for starting an engine)")
    python: StringProperty(
        name="Engine Python", subtype="FILE_PATH",
        description="Interpreter that runs the engine; empty: the project's .venv")
    engine_args: StringProperty(
        name="Extra Engine Arguments",
        description="Added to `python -m engine serve` when the add-on starts the engine")
    uv_unwrap: BoolProperty(
        name="UVs on Every Part", default=True,
        description="Give every generated or edited part a UV map (box projection, islands "
        "packed side by side), ready for texturing")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "address")
        layout.prop(self, "timeout")
        layout.prop(self, "keys")
        layout.prop(self, "uv_unwrap")
        column = layout.column(heading="Local Engine")
        column.prop(self, "auto_start")
        column.prop(self, "project")
        column.prop(self, "python")
        column.prop(self, "engine_args")


classes = (PartsmithPreferences,)
