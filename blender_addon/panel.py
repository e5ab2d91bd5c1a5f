"""The Partsmith tab of the 3D viewport sidebar (drawing only; no state changes)."""

import textwrap

import bpy

from . import api, engine_link


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

        generation = api.Current.generation
        if generation is not None and generation.state == "running":
            row = layout.row(align=True)
            row.progress(factor=generation.fraction, type="BAR",
                         text=f"{generation.stage} {generation.fraction:.0%}")
            row.operator("partsmith.cancel", text="", icon="CANCEL")
        else:
            layout.operator("partsmith.generate", icon="PLAY")
        if api.Current.error:
            _wrapped(layout.box(), api.Current.error, icon="ERROR", alert=True)
        _engine_box(layout.box())


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


classes = (VIEW3D_PT_partsmith,)
