"""Per-scene generation settings shown in the panel (stored in the .blend)."""

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty

from . import candidates, engine_link

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

    edit_strength: FloatProperty(name="Strength", default=0.5, min=0.05, max=1.0,
                                 description="How far a refine re-noises the parts: 0.05 keeps "
                                 "them nearly as they are, 1 starts from noise")
    edit_seed: IntProperty(name="Edit Seed", default=1, min=0,
                           description="Seed of refines; Vary picks the next one")
    alpha: FloatProperty(name="α", default=0.5, min=0.0, max=1.0,
                         description="Interpolate: how far toward the library part")
    candidate: EnumProperty(name="Candidate", items=candidates.items,
                            description="Library part to swap in (Find Candidates fills this)")

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
