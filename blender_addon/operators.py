"""Operators: thin layers over api and engine_link.

Generate runs modally in the UI (a window timer calls `api.Generation.step`, so Blender
never freezes) and synchronously when executed from a script or in background mode.
"""

import bpy

from . import api, engine_link
from .bridge import EngineError

STATUS_INTERVAL = 0.25  # seconds between engine status polls


def redraw_panels() -> None:
    for window in getattr(bpy.context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def status_tick():
    """App-timer callback: fold in the engine's hello; stop once nothing is pending."""
    pending = engine_link.poll()
    redraw_panels()
    return STATUS_INTERVAL if pending else None


def watch_status() -> None:
    if not bpy.app.timers.is_registered(status_tick):
        bpy.app.timers.register(status_tick, first_interval=STATUS_INTERVAL)


class PARTSMITH_OT_generate(bpy.types.Operator):
    """Generate a part-structured asset from the reference image"""

    bl_idname = "partsmith.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}  # the finished asset pushes its own single undo step

    @classmethod
    def poll(cls, context):
        running = api.Current.generation is not None and api.Current.generation.state == "running"
        return context.scene is not None and not running

    def execute(self, context):
        settings = context.scene.partsmith
        try:
            api.generate(self._image(settings), **settings.options())
        except api.PartsmithError as error:
            self.report({"ERROR"}, error.message)
            return {"CANCELLED"}
        return {"FINISHED"}

    def invoke(self, context, event):
        settings = context.scene.partsmith
        try:
            api.start(self._image(settings), **settings.options())
        except api.PartsmithError as error:
            self.report({"ERROR"}, error.message)
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.05, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            api.cancel()
        if event.type != "TIMER" or event.timer != self._timer:
            return {"PASS_THROUGH"}
        generation = api.Current.generation
        finished = generation.step()
        redraw_panels()
        if not finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        if generation.state == "done":
            self.report({"INFO"}, f"Partsmith: {generation.root.name} added")
            return {"FINISHED"}
        self.report({"WARNING"} if generation.state == "cancelled" else {"ERROR"},
                    generation.error)
        return {"CANCELLED"}

    @staticmethod
    def _image(settings):
        if settings.image is None:
            raise api.PartsmithError("invalid_image", "Pick a reference image first")
        return settings.image


class PARTSMITH_OT_cancel(bpy.types.Operator):
    """Stop the running generation; the scene stays as it was"""

    bl_idname = "partsmith.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        api.cancel()
        return {"FINISHED"}


class PARTSMITH_OT_refresh_engine(bpy.types.Operator):
    """Ask the engine for its status (device, models, library)"""

    bl_idname = "partsmith.refresh_engine"
    bl_label = "Refresh Engine Status"

    def execute(self, context):
        engine_link.refresh()
        watch_status()
        return {"FINISHED"}


class PARTSMITH_OT_start_engine(bpy.types.Operator):
    """Start a local engine with the interpreter set in the preferences"""

    bl_idname = "partsmith.start_engine"
    bl_label = "Start Engine"

    def execute(self, context):
        try:
            engine_link.start_engine()
        except (ValueError, OSError) as error:
            api.Current.error = f"Cannot start the engine: {error}"
            self.report({"ERROR"}, api.Current.error)
            return {"CANCELLED"}
        watch_status()
        return {"FINISHED"}


class PARTSMITH_OT_stop_engine(bpy.types.Operator):
    """Shut the engine down (running jobs end as cancelled)"""

    bl_idname = "partsmith.stop_engine"
    bl_label = "Stop Engine"

    def execute(self, context):
        try:
            engine_link.stop_engine()
        except (EngineError, OSError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


classes = (PARTSMITH_OT_generate, PARTSMITH_OT_cancel, PARTSMITH_OT_refresh_engine,
           PARTSMITH_OT_start_engine, PARTSMITH_OT_stop_engine)


def unregister() -> None:
    if bpy.app.timers.is_registered(status_tick):
        bpy.app.timers.unregister(status_tick)
