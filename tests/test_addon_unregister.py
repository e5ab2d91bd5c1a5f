"""Disabling the add-on leaves nothing behind: classes, scene property, timers, client
thread. (Runs after the other add-on tests; re-enables the add-on at the end.)"""

import threading

import bpy

from addon_harness import addon  # noqa: F401


def partsmith_types() -> list:
    return [name for name in dir(bpy.types) if "partsmith" in name.lower()]


def test_unregister_leaves_nothing_behind(addon):
    assert len(partsmith_types()) == 11  # 9 operators and the two panels
    addon.engine_link.client()  # a live client thread, as after any request
    addon.operators.watch_status()
    assert bpy.app.timers.is_registered(addon.operators.status_tick)
    try:
        bpy.ops.preferences.addon_disable(module=addon.name)
        assert partsmith_types() == []
        assert not hasattr(bpy.types.Scene, "partsmith")
        assert bpy.context.preferences.addons.get(addon.name) is None
        assert not bpy.app.timers.is_registered(addon.operators.status_tick)
        assert "partsmith-bridge" not in [thread.name for thread in threading.enumerate()]
        assert addon.engine_link.State.client is None
    finally:
        bpy.ops.preferences.addon_enable(module=addon.name)
    assert hasattr(bpy.types.Scene, "partsmith")
