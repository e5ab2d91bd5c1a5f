"""Rendering of part assets: cameras (numpy), a Blender Workbench worker, contact sheets."""

from engine.render.camera import Camera, look_at, orbit, orbit_views
from engine.render.renderer import Renderer, RenderWorkerError, View
from engine.render.sheet import contact_sheet, mask_to_rgba

__all__ = ["Camera", "RenderWorkerError", "Renderer", "View", "contact_sheet", "look_at",
           "mask_to_rgba", "orbit", "orbit_views"]
