"""Operators: thin layers over api and engine_link.

Generate and Edit run modally in the UI (a window timer calls the task's `step`, so Blender
never freezes) and synchronously when executed from a script or in background mode.
"""

import bpy

from . import api, candidates, engine_link
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


class TaskOperator:
    """Runs one api Task: modal in the UI (a window timer steps it, so Blender never
    freezes), blocking when executed from a script or in background mode. Subclasses
    say how to `start` it and what to `say` when it is done."""

    @classmethod
    def poll(cls, context):
        running = api.Current.task is not None and api.Current.task.state == "running"
        return context.scene is not None and not running

    def start(self, context) -> api.Task:
        raise NotImplementedError

    def say(self, task) -> str:
        raise NotImplementedError

    def execute(self, context):
        try:
            task = api.wait(self.start(context), report=None)
        except api.PartsmithError as error:
            self.report({"ERROR"}, error.message)
            return {"CANCELLED"}
        self.report({"INFO"}, self.say(task))
        return {"FINISHED"}

    def invoke(self, context, event):
        try:
            self.start(context)
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
        task = api.Current.task
        finished = task.step()
        redraw_panels()
        if not finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        if task.state == "done":
            self.report({"INFO"}, self.say(task))
            return {"FINISHED"}
        self.report({"WARNING"} if task.state == "cancelled" else {"ERROR"}, task.error)
        return {"CANCELLED"}


class PARTSMITH_OT_generate(TaskOperator, bpy.types.Operator):
    """Generate a part-structured asset from the reference image"""

    bl_idname = "partsmith.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}  # the finished asset pushes its own single undo step

    def start(self, context):
        settings = context.scene.partsmith
        if settings.image is None:
            raise api.PartsmithError("invalid_image", "Pick a reference image first")
        return api.start(settings.image, **settings.options())

    def say(self, task) -> str:
        return f"Partsmith: {task.root.name} added"


EDIT_OPERATIONS = [("refine", "Refine", "Re-noise the selected parts to Strength and denoise them again"),
                   ("vary", "Vary", "Refine with the next seed: another version of the parts"),
                   ("interpolate", "Interpolate", "Move the part toward its nearest library part by α"),
                   ("assemble", "Assemble", "Resynthesise the selected parts together"),
                   ("swap", "Swap", "Put the chosen candidate in the part's place and blend it in"),
                   ("place", "Place", "Put the chosen candidate in the part's place as it is (instant)")]


class PARTSMITH_OT_edit(TaskOperator, bpy.types.Operator):
    """Edit the selected parts of a Partsmith asset; the other parts stay exactly as they are"""

    bl_idname = "partsmith.edit"
    bl_label = "Edit Parts"
    bl_options = {"REGISTER"}  # the finished edit pushes its own single undo step

    operation: bpy.props.EnumProperty(items=EDIT_OPERATIONS, name="Operation")

    def start(self, context):
        settings = context.scene.partsmith
        parts = [obj for obj in context.selected_objects if "partsmith_index" in obj]
        if self.operation == "vary":
            settings.edit_seed += 1
            return api.start_edit(parts, "refine", strength=settings.edit_strength,
                                  seed=settings.edit_seed)
        if self.operation == "refine":
            return api.start_edit(parts, "refine", strength=settings.edit_strength,
                                  seed=settings.edit_seed)
        if self.operation == "assemble":
            return api.start_edit(parts, "assemble", seed=settings.edit_seed)
        if self.operation == "interpolate":
            return api.start_edit(parts, "interpolate", alpha=settings.alpha,
                                  seed=settings.edit_seed)
        candidate = candidates.get(settings.candidate)
        if candidate is None:
            raise api.PartsmithError("invalid_parameter", "Find candidates and pick one first")
        return api.start_edit(parts, self.operation, source=candidate)

    def say(self, task) -> str:
        return f"Partsmith: {task.operation} changed {len(task.changed)} part(s)"


class PARTSMITH_OT_find_candidates(bpy.types.Operator):
    """Find library parts to swap in for the active part (closest in shape, same label)"""

    bl_idname = "partsmith.find_candidates"
    bl_label = "Find Candidates"

    count: bpy.props.IntProperty(name="Count", default=12, min=1, max=100)

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and "partsmith_index" in context.active_object

    def execute(self, context):
        try:
            found = api.candidates(context.active_object, k=self.count)
        except api.PartsmithError as error:
            api.Current.error = error.message
            self.report({"ERROR"}, error.message)
            return {"CANCELLED"}
        candidates.show(context.active_object, found)
        if found:
            context.scene.partsmith.candidate = "0"
        self.report({"INFO"}, f"Partsmith: {len(found)} candidates")
        return {"FINISHED"}


class PARTSMITH_OT_import_candidate(bpy.types.Operator):
    """Add the chosen candidate's whole library asset to the scene as a new asset"""

    bl_idname = "partsmith.import_candidate"
    bl_label = "Import Library Asset"

    def execute(self, context):
        candidate = candidates.get(context.scene.partsmith.candidate)
        if candidate is None:
            self.report({"ERROR"}, "Find candidates and pick one first")
            return {"CANCELLED"}
        try:
            root = api.import_library_asset(candidate.asset_id)
        except api.PartsmithError as error:
            api.Current.error = error.message
            self.report({"ERROR"}, error.message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Partsmith: {root.name} imported")
        return {"FINISHED"}


class PARTSMITH_OT_adopt(bpy.types.Operator):
    """Make the selected mesh objects (made by hand or imported) a Partsmith asset whose
    parts can be edited; the originals are hidden, not changed"""

    bl_idname = "partsmith.adopt"
    bl_label = "Make Partsmith Asset"

    @classmethod
    def poll(cls, context):
        return sum(obj.type == "MESH" for obj in context.selected_objects) >= 2

    def execute(self, context):
        try:
            root = api.adopt(context.selected_objects)
        except api.PartsmithError as error:
            self.report({"ERROR"}, error.message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Partsmith: {root.name} with {len(root.children)} parts")
        return {"FINISHED"}


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


classes = (PARTSMITH_OT_generate, PARTSMITH_OT_edit, PARTSMITH_OT_find_candidates,
           PARTSMITH_OT_import_candidate, PARTSMITH_OT_adopt, PARTSMITH_OT_cancel, PARTSMITH_OT_refresh_engine, PARTSMITH_OT_start_engine,
           PARTSMITH_OT_stop_engine)


def unregister() -> None:
    if bpy.app.timers.is_registered(status_tick):
        bpy.app.timers.unregister(status_tick)
    candidates.clear()
