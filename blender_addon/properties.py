"""Per-scene generation settings shown in the panel (stored in the .blend)."""

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty

from . import engine_link

DEFAULT_MODEL = "partrag"
_model_items: list = []  # Blender needs the dynamic enum items kept alive


def _models(self, context):
    names = engine_link.generate_models() or [DEFAULT_MODEL]
    _model_items[:] = [(name, name, f"the engine's {name!r} generate pipeline")
                       for name in names]
    return _model_items


class PartsmithSettings(bpy.types.PropertyGroup):
    image: PointerProperty(name="Reference Image", type=bpy.types.Image,
                           description="The image to turn into a part-structured asset")
    model: EnumProperty(name="Model", items=_models,
                        description="Generation pipeline, as reported by the engine")
    parts: IntProperty(name="Parts", default=0, min=0, max=64,
                       description="Number of parts; 0: the model decides")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same result")
    steps: IntProperty(name="Steps", default=0, min=0, max=1000,
                       description="Denoising steps; 0: the model's default")
    guidance: FloatProperty(name="Guidance", default=0.0, min=0.0, max=100.0,
                            description="Classifier-free guidance scale; 0: the model's default")
    top_k: IntProperty(name="Retrieval Top-k", default=-1, min=-1, max=100,
                       description="Library exemplars retrieved to condition the generation; "
                       "-1: the model's default; 0: no retrieval (plain PartCrafter behaviour)")

    def options(self) -> dict:
        """Keyword arguments for api.start / api.generate: what the artist set, None where
        the engine's model chooses (0 for most settings, -1 for top-k, where 0 turns
        retrieval off)."""
        return {"model": self.model or DEFAULT_MODEL, "parts": self.parts or None,
                "seed": self.seed, "steps": self.steps or None,
                "guidance": self.guidance or None,
                "top_k": None if self.top_k < 0 else self.top_k}


classes = (PartsmithSettings,)


def register() -> None:
    bpy.types.Scene.partsmith = PointerProperty(type=PartsmithSettings)


def unregister() -> None:
    del bpy.types.Scene.partsmith
