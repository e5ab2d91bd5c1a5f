"""The Partsmith tab of the 3D viewport sidebar (drawing only; no state changes)."""

import textwrap

import bpy

from . import api, candidates, engine_link


class VIEW3D_PT_partsmith(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Partsmith"
    bl_label = "Partsmith"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.partsmith
        layout.template_ID_preview(settings, "image", open="image.open", rows=3, cols=6)
        column = layout.column(align=True)
        column.use_property_split = True
        for name in ("model", "parts", "seed", "steps", "guidance", "top_k"):
            column.prop(settings, name)

        if not _progress(layout):
            layout.operator("partsmith.generate", icon="PLAY")
            layout.operator("partsmith.adopt", icon="OUTLINER_OB_GROUP_INSTANCE")
        if api.Current.error:
            _wrapped(layout.box(), api.Current.error, icon="ERROR", alert=True)
        _engine_box(layout.box())


class VIEW3D_PT_partsmith_parts(bpy.types.Panel):
    """Edit the selected parts of an asset: swap from the library, refine, vary, blend."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Partsmith"
    bl_label = "Parts"
    bl_parent_id = "VIEW3D_PT_partsmith"

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and "partsmith_index" in context.active_object

    def draw(self, context):
        layout = self.layout
        settings = context.scene.partsmith
        selected = [obj for obj in context.selected_objects if "partsmith_index" in obj]
        layout.label(text=f"{len(selected)} part(s) selected: "
                     + ", ".join(obj["partsmith_label"] for obj in selected[:3])
                     + (" ..." if len(selected) > 3 else ""))
        if _progress(layout):
            return
        layout.operator("partsmith.find_candidates", icon="VIEWZOOM")
        if candidates.shown() and candidates.shown_for() == context.active_object.name:
            layout.template_icon_view(settings, "candidate", show_labels=True, scale=5.0,
                                      scale_popup=4.0)
            row = layout.row(align=True)
            row.operator("partsmith.edit", text="Swap", icon="UV_SYNC_SELECT").operation = "swap"
            row.operator("partsmith.edit", text="Place", icon="SNAP_ON").operation = "place"
            layout.operator("partsmith.import_candidate", icon="IMPORT")
        column = layout.column(align=True)
        column.prop(settings, "edit_strength")
        row = column.row(align=True)
        row.operator("partsmith.edit", text="Refine").operation = "refine"
        row.operator("partsmith.edit", text="Vary").operation = "vary"
        row = layout.row(align=True)
        row.prop(settings, "alpha")
        row.operator("partsmith.edit", text="Interpolate").operation = "interpolate"
        row = layout.row()
        row.enabled = len(selected) >= 2
        row.operator("partsmith.edit", text="Assemble", icon="MOD_BUILD").operation = "assemble"


def _progress(layout) -> bool:
    """A progress bar with a cancel button while a task runs; True if one was drawn."""
    task = api.Current.task
    if task is None or task.state != "running":
        return False
    row = layout.row(align=True)
    row.progress(factor=task.fraction, type="BAR", text=f"{task.stage} {task.fraction:.0%}")
    row.operator("partsmith.cancel", text="", icon="CANCEL")
    return True


def _engine_box(box) -> None:
    info = engine_link.State.info
    header = box.row()
    if info is None:
        header.label(text="Engine: not connected", icon="UNLINKED")
        if engine_link.State.problem:
            _wrapped(box, engine_link.State.problem)
    else:
        header.label(text="Engine: connected", icon="LINKED")
        models = ", ".join(engine_link.generate_models()) or "none installed"
        box.label(text=f"Device: {info.get('device', '?')}")
        box.label(text=f"Models: {models}")
        box.label(text=f"Library: {info.get('library_size', 0)} assets")
    header.operator("partsmith.refresh_engine", text="", icon="FILE_REFRESH")
    row = box.row(align=True)
    row.operator("partsmith.start_engine", icon="PLAY")
    row.operator("partsmith.stop_engine", icon="PAUSE")


def _wrapped(layout, text: str, icon: str = "NONE", alert: bool = False) -> None:
    column = layout.column(align=True)
    column.alert = alert
    for number, line in enumerate(textwrap.wrap(text, 42)):
        column.label(text=line, icon=icon if number == 0 else "BLANK1")


classes = (VIEW3D_PT_partsmith, VIEW3D_PT_partsmith_parts)
