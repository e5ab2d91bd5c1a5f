"""Household objects: desk lamps, floor lamps, mugs, bottles, buckets."""

from __future__ import annotations

import numpy as np

from engine.data import primitives as P
from engine.data.asset import AssetBuilder
from engine.data.categories import category
from engine.data.materials import palette


# ---------------------------------------------------------------------------------------------
# Shape helpers
# ---------------------------------------------------------------------------------------------

def shell(outer, thickness: float, segments: int = 32) -> P.Mesh:
    """Open vessel (cup, shade, cap): `outer` is its (radius, y) outside from the axis to the rim."""
    outer = np.asarray(outer, dtype=np.float64)
    return P.lathe(np.concatenate([outer, _inset(outer, thickness)[::-1]]), segments)


def _inset(outer: np.ndarray, t: float) -> np.ndarray:
    """Inside wall of a vessel: `outer` offset by t towards the hollow, ending on a flat rim."""
    d = np.diff(outer, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    n = np.stack([-d[:, 1], d[:, 0]], 1)
    if n[0, 1] * (outer[-1, 1] - outer[0, 1]) < 0:  # the hollow lies towards the rim
        n = -n
    vn = np.concatenate([n[:1], n[:-1] + n[1:], n[-1:]])
    vn /= np.linalg.norm(vn, axis=1, keepdims=True)
    miter = np.maximum(np.einsum("ij,ij->i", vn, np.concatenate([n[:1], n])), 0.5)
    inner = outer + vn * (t / miter)[:, None]
    inner[0, 0] = 0.0
    if abs(d[-1, 1]) > 1e-9:  # slide the last point along the wall back to the rim height
        inner[-1] += d[-1] * (outer[-1, 1] - inner[-1, 1]) / d[-1, 1]
    return inner


def ring_lathe(profile, segments: int = 32) -> P.Mesh:
    """Revolve a closed (radius, y) polygon about Y: a band with a hole (drum shade, label)."""
    p = np.asarray(profile, dtype=np.float64)
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    v = np.stack([p[:, :1] * np.cos(theta), np.repeat(p[:, 1:], segments, 1),
                  p[:, :1] * np.sin(theta)], -1).reshape(-1, 3)
    a = np.arange(len(v)).reshape(len(p), segments)
    b = np.roll(a, -1, 0)
    a1, b1 = np.roll(a, -1, 1), np.roll(b, -1, 1)
    f = np.concatenate([np.stack([a, a1, b1], -1).reshape(-1, 3), np.stack([a, b1, b], -1).reshape(-1, 3)])
    if P.signed_volume(v, f) < 0:
        f = f[:, ::-1]
    return P.Mesh(v, np.ascontiguousarray(f, dtype=np.int32))


def band(radius_at, y0: float, y1: float, thickness: float, count: int = 8) -> P.Mesh:
    """Thin band hugging a surface of revolution (radius_at(y)) between heights y0 and y1."""
    y = np.linspace(y0, y1, count)
    r = radius_at(y)
    outside = np.stack([r + thickness, y], 1)
    inside = np.stack([r - thickness * 0.5, y], 1)[::-1]
    return ring_lathe(np.concatenate([outside, inside]))


def rod(a, b, radius: float, segments: int = 12) -> P.Mesh:
    """Straight capped rod from point a to point b."""
    return P.tube(np.array([a, b], dtype=np.float64), radius, segments)


def bezier(ctrl, count: int = 24) -> np.ndarray:
    """Points on a Bezier curve through its control points (de Casteljau)."""
    t = np.linspace(0, 1, count)[:, None]
    pts = [np.broadcast_to(np.asarray(c, dtype=np.float64), (count, 3)) for c in ctrl]
    while len(pts) > 1:
        pts = [(1 - t) * a + t * b for a, b in zip(pts[:-1], pts[1:])]
    return pts[0]


def loop_handle(radius_at, y_top: float, y_bot: float, depth: float, squareness: float,
                inset: float, count: int = 24) -> np.ndarray:
    """Handle path in the XY plane leaving a body of revolution at y_top and rejoining at y_bot.

    `depth` is how far the loop stands off the body; squareness 1 gives a round loop, smaller
    values a squarer D shape. Ends sit `inset` inside the body surface.
    """
    phi = np.linspace(np.pi / 2, -np.pi / 2, count)
    y = (y_top + y_bot) / 2 + (y_top - y_bot) / 2 * np.sin(phi)
    x = radius_at(y) - inset + depth * np.abs(np.cos(phi)) ** squareness
    return np.stack([x, y, np.zeros_like(x)], 1)


def _radius_fn(profile):
    """radius(y) along the outside of a profile whose y rises from its second to last point."""
    p = np.asarray(profile, dtype=np.float64)[1:]
    return lambda y: np.interp(y, p[:, 1], p[:, 0])


def _tilt(mesh: P.Mesh, tilt: float, at) -> P.Mesh:
    """Turn a mesh hanging along -Y forward (towards +Z) by `tilt` radians, then move it to `at`."""
    return mesh.transformed(P.rotation("x", -tilt)).translated(at)


def _pick(rng: np.random.Generator, options) -> str:
    return str(rng.choice(list(options)))


# ---------------------------------------------------------------------------------------------
# Lamps
# ---------------------------------------------------------------------------------------------

def shade_profile(rng: np.random.Generator, style: str, radius: float, height: float) -> np.ndarray:
    """Outside of a lamp shade from its top centre (origin) down to the rim at y = -height."""
    if style == "cone":
        return np.array([(0, 0), (radius * rng.uniform(0.25, 0.5), 0), (radius, -height)])
    if style == "cylinder":
        return np.array([(0, 0), (radius * 0.85, 0), (radius, -0.12 * height), (radius, -height)])
    if style == "bell":
        top = radius * rng.uniform(0.25, 0.4)
        return np.array([(0, 0), (top, 0), (top * 1.15, -0.35 * height),
                         (radius * 0.6, -0.75 * height), (radius, -height)])
    a = np.linspace(0, np.pi / 2, 10)  # dome
    return np.stack([radius * np.sin(a), -height * (1 - np.cos(a))], 1)


SHADE_HEIGHT = {"cone": (0.7, 1.3), "dome": (0.55, 0.95), "cylinder": (1.0, 1.8), "bell": (0.9, 1.4)}


def lamp_head(rng: np.random.Generator, style: str, radius: float, with_bulb: bool):
    """Shade hanging from the origin along -Y, and a bulb on a socket inside it (or None)."""
    height = radius * rng.uniform(*SHADE_HEIGHT[style])
    t = radius * rng.uniform(0.035, 0.06)
    shade = shell(shade_profile(rng, style, radius, height), t)
    if not with_bulb:
        return shade, None
    rb = radius * rng.uniform(0.25, 0.35)
    depth = max(height - 0.6 * rb, 1.5 * rb + t)
    socket_h = depth - 0.8 * rb - 0.5 * t
    socket = P.cylinder(0.5 * rb, socket_h, 16).translated((0, -0.5 * t - socket_h / 2, 0))
    return shade, [socket, P.sphere(rb, 20).translated((0, -depth, 0))]


def lamp_base(rng: np.random.Generator, radius: float, heavy: bool) -> tuple[str, P.Mesh, float]:
    """Round, domed, stepped or square lamp foot standing on y = 0; returns (style, mesh, top y)."""
    style = _pick(rng, ["disc", "dome", "stepped", "square"])
    h = radius * rng.uniform(0.15, 0.35) * (1.5 if heavy else 1.0)
    if style == "disc":
        mesh = P.cylinder(radius, h, 40, radius_top=radius * rng.uniform(0.75, 1.0)).translated((0, h / 2, 0))
    elif style == "dome":
        a = np.linspace(0, np.pi / 2, 8)
        dome = np.stack([radius * np.cos(a), h * 0.3 + h * 0.7 * np.sin(a)], 1)[:-1]
        mesh = P.lathe([(0, 0), (radius, 0), *dome, (0, h)], 40)
    elif style == "stepped":
        r2 = radius * rng.uniform(0.5, 0.75)
        mesh = P.lathe([(0, 0), (radius, 0), (radius, h * 0.5), (r2, h * 0.5), (r2, h), (0, h)], 40)
    else:
        size = (2 * radius, h, 2 * radius * rng.uniform(0.7, 1.1))
        mesh = P.rounded_box(size, h * 0.3).translated((0, h / 2, 0))
    return style, mesh, h


@category("desk_lamp")
def desk_lamp(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("desk_lamp", palette(rng, _pick(rng, ["metal", "paint", "plastic"]),
                                          _pick(rng, ["metal", "paint", "plastic"]), "light"))
    style = _pick(rng, ["articulated", "gooseneck", "pole"])
    base_r = rng.uniform(0.07, 0.13)
    base_style, base, base_top = lamp_base(rng, base_r, heavy=False)
    b.add("base", base, material=0)
    arm_r = rng.uniform(0.004, 0.009)
    arm_mat = int(rng.integers(2))
    shade_style = _pick(rng, SHADE_HEIGHT)
    shade_r = rng.uniform(0.06, 0.12)
    with_bulb = rng.random() < 0.6
    shade, bulb = lamp_head(rng, shade_style, shade_r, with_bulb)
    z0 = 0.0 if base_style == "dome" else -base_r * rng.uniform(0.0, 0.55)
    start = np.array([0.0, base_top, z0])
    min_y = base_top + shade_r * 1.9 + 0.05
    if style == "articulated":
        end, tilt, extra = _articulated_arm(b, rng, start, arm_r, arm_mat, min_y)
    elif style == "gooseneck":
        end, tilt, extra = _gooseneck_arm(b, rng, start, arm_r, arm_mat, min_y)
    else:
        end, tilt, extra = _pole_arm(b, rng, start, arm_r, arm_mat, min_y)
    b.add("shade", _tilt(shade, tilt, end), material=1)
    if bulb is not None:
        b.add("bulb", _tilt(P.merge(bulb), tilt, end), material=2)
    b.params.update(style=style, base_style=base_style, shade_style=shade_style, bulb=bool(with_bulb),
                    tilt_deg=round(float(np.degrees(tilt)), 2), **extra)
    return b


def _joint(style: str, radius: float, width: float) -> P.Mesh:
    """A ball or a barrel (cylinder along X) centred at the origin."""
    if style == "ball":
        return P.sphere(radius, 16)
    return P.cylinder(radius, width, 20).rotated("z", np.pi / 2)


def _articulated_arm(b: AssetBuilder, rng, start, arm_r, arm_mat, min_y):
    """Two rod segments (single or twin) with joints at the foot, elbow and maybe the head."""
    twin = rng.random() < 0.35
    gap = rng.uniform(0.012, 0.02) if twin else 0.0
    joint_style = "barrel" if twin or rng.random() < 0.5 else "ball"
    joint_r = arm_r * rng.uniform(1.6, 2.2)
    joint = _joint(joint_style, joint_r, 2 * gap + 5 * arm_r)
    pivot = start + [0, joint_r * 0.8, 0]
    l1, l2 = rng.uniform(0.22, 0.42, 2)
    lean = rng.uniform(-0.35, 0.45)
    elbow = pivot + l1 * np.array([0, np.cos(lean), np.sin(lean)])
    reach = rng.uniform(-0.7, 0.35)
    reach = max(reach, float(np.arcsin(np.clip((min_y - elbow[1]) / l2, -1, 1))))
    end = elbow + l2 * np.array([0, np.sin(reach), np.cos(reach)])

    def segment(a, c):
        offsets = [(-gap, 0, 0), (gap, 0, 0)] if twin else [(0, 0, 0)]
        return [rod(a + o, c + o, arm_r) for o in offsets]

    b.add("arm", segment(pivot, elbow), material=arm_mat)
    b.add("arm", segment(elbow, end), material=arm_mat)
    b.add("joint", joint.translated(pivot), material=0)
    b.add("joint", joint.translated(elbow), material=0)
    head_joint = rng.random() < 0.6
    if head_joint:
        b.add("joint", joint.translated(end), material=0)
    tilt = rng.uniform(0.1, 1.1)
    return end, tilt, dict(twin_arm=bool(twin), joint_style=joint_style, head_joint=bool(head_joint))


def _gooseneck_arm(b: AssetBuilder, rng, start, arm_r, arm_mat, min_y):
    """One flexible tube curving up from the base (maybe out of a collar) into the shade's top."""
    collar = rng.random() < 0.5
    if collar:
        ch = rng.uniform(0.02, 0.05)
        b.add("joint", P.cylinder(arm_r * 2.4, ch, 20).translated(start + [0, ch / 2 - 0.002, 0]), material=0)
        start = start + [0, ch - 0.004, 0]
    else:
        start = start - [0, 0.004, 0]
    height = max(rng.uniform(0.28, 0.5), min_y - start[1])
    end = start + [0, height, rng.uniform(0.12, 0.3)]
    tilt = rng.uniform(0.2, 1.2)
    axis = np.array([0, -np.cos(tilt), np.sin(tilt)])
    path = bezier([start, start + [0, height * rng.uniform(0.5, 0.9), 0],
                   end - axis * height * rng.uniform(0.3, 0.6), end], 28)
    b.add("arm", P.tube(path, arm_r * 1.3, 12), material=arm_mat)
    return end, tilt, dict(collar=bool(collar))


def _pole_arm(b: AssetBuilder, rng, start, arm_r, arm_mat, min_y):
    """Upright rod plus a forward rod, maybe with a ball at the corner."""
    top = start + [0, max(rng.uniform(0.25, 0.45), min_y + 0.1 - start[1]), 0]
    angle = rng.uniform(-0.3, 0.3)
    end = top + rng.uniform(0.15, 0.35) * np.array([0, np.sin(angle), np.cos(angle)])
    b.add("arm", rod(start - [0, 0.004, 0], top, arm_r * 1.2), material=arm_mat)
    b.add("arm", rod(top, end, arm_r), material=arm_mat)
    corner = rng.random() < 0.6
    if corner:
        b.add("joint", P.sphere(arm_r * rng.uniform(1.8, 2.6), 16).translated(top), material=0)
    return end, rng.uniform(0.0, 0.6), dict(corner_joint=bool(corner))


def drum(rng: np.random.Generator, bottom_r: float, height: float):
    """Upright shade open at both ends; returns (mesh, inner radius as a function of y)."""
    top_r = bottom_r * rng.uniform(0.55, 1.05)
    t = bottom_r * rng.uniform(0.015, 0.03)
    mesh = ring_lathe([(bottom_r, 0), (top_r, height), (top_r - t, height), (bottom_r - t, 0)], 40)
    return mesh, lambda y: bottom_r - t + (top_r - bottom_r) * y / height


@category("floor_lamp")
def floor_lamp(rng: np.random.Generator) -> AssetBuilder:
    style = _pick(rng, ["straight", "arc", "tripod", "torchiere", "reading"])
    frame = "wood" if style == "tripod" else _pick(rng, ["metal", "paint"])
    b = AssetBuilder("floor_lamp", palette(rng, frame, _pick(rng, ["fabric", "light", "paint", "metal"]), "light"))
    pole_r = rng.uniform(0.008, 0.018)
    base_style = "none"
    base_top = 0.0
    if style != "tripod":
        base_style, base, base_top = lamp_base(rng, rng.uniform(0.12, 0.24), heavy=style == "arc")
        b.add("base", base, material=0)
    if style in ("straight", "tripod"):
        extra = _drum_lamp(b, rng, base_top, pole_r, tripod=style == "tripod")
    else:
        extra = {"arc": _arc_lamp, "torchiere": _torchiere, "reading": _reading_lamp}[style](b, rng, base_top, pole_r)
    b.params.update(style=style, base_style=base_style, **extra)
    return b


def _drum_lamp(b: AssetBuilder, rng, base_top, pole_r, tripod: bool):
    """Upright pole (or tripod) carrying a drum shade held by a spoked harp around the bulb."""
    shade_r = rng.uniform(0.15, 0.25)
    shade_h = rng.uniform(0.18, 0.36)
    shade_y = rng.uniform(1.15, 1.6)
    pole_bottom = base_top - 0.005
    if tripod:
        apex = shade_y - rng.uniform(0.1, 0.3)
        spread = rng.uniform(0.25, 0.4)
        leg_r = pole_r * rng.uniform(1.0, 1.4)
        spin = rng.uniform(0, 2 * np.pi)
        for k in range(3):
            a = spin + 2 * np.pi * k / 3
            b.add("leg", rod((spread * np.cos(a), leg_r, spread * np.sin(a)), (0, apex + leg_r, 0), leg_r), material=0)
        pole_bottom = apex - 0.01
    shade, inner_r = drum(rng, shade_r, shade_h)
    b.add("shade", shade.translated((0, shade_y, 0)), material=1)
    bulb_r = rng.uniform(0.025, 0.045)
    socket_h = rng.uniform(0.03, 0.05)
    pole_top = shade_y + min(shade_h * rng.uniform(0.1, 0.4), shade_h * 0.9 - socket_h - 1.6 * bulb_r)
    b.add("pole", rod((0, pole_bottom, 0), (0, pole_top, 0), pole_r), material=0)
    spokes = int(rng.integers(3, 5))
    wire = rng.uniform(0.002, 0.004)
    reach = float(inner_r(pole_top - shade_y)) + wire
    ring = [rod((0.5 * pole_r * np.cos(a), pole_top - wire, 0.5 * pole_r * np.sin(a)),
                (reach * np.cos(a), pole_top - wire, reach * np.sin(a)), wire, 8)
            for a in np.pi / 4 + 2 * np.pi * np.arange(spokes) / spokes]
    b.add("harp", ring, material=0)
    with_bulb = rng.random() < 0.7
    if with_bulb:
        b.add("bulb", [P.cylinder(pole_r * 1.3, socket_h, 16).translated((0, pole_top + socket_h / 2, 0)),
                       P.sphere(bulb_r, 20).translated((0, pole_top + socket_h + 0.8 * bulb_r, 0))], material=2)
    return dict(shade_style="drum", spokes=spokes, bulb=bool(with_bulb))


def _arc_lamp(b: AssetBuilder, rng, base_top, pole_r):
    """Pole rising then arching forward over the floor, a shade hanging from its tip."""
    rise = rng.uniform(0.9, 1.4)
    bend = rng.uniform(0.35, 0.7)
    end_angle = rng.uniform(0.0, 0.5)
    a = np.linspace(np.pi, end_angle, 28)
    arc_pts = np.stack([np.zeros_like(a), base_top + rise + bend * np.sin(a), bend + bend * np.cos(a)], 1)
    path = np.concatenate([[[0, base_top - 0.005, 0]], arc_pts])
    b.add("pole", P.tube(path, pole_r, 12), material=0)
    shade_style = _pick(rng, ["dome", "cone", "bell"])
    with_bulb = rng.random() < 0.6
    shade, bulb = lamp_head(rng, shade_style, rng.uniform(0.14, 0.25), with_bulb)
    b.add("shade", _tilt(shade, end_angle, arc_pts[-1]), material=1)
    if bulb is not None:
        b.add("bulb", _tilt(P.merge(bulb), end_angle, arc_pts[-1]), material=2)
    return dict(shade_style=shade_style, bulb=bool(with_bulb))


def _torchiere(b: AssetBuilder, rng, base_top, pole_r):
    """Tall pole under an upward-facing bowl."""
    top = rng.uniform(1.5, 1.85)
    b.add("pole", rod((0, base_top - 0.005, 0), (0, top + 0.004, 0), pole_r), material=0)
    r = rng.uniform(0.15, 0.25)
    h = rng.uniform(0.06, 0.15)
    foot = r * rng.uniform(0.1, 0.25)
    if rng.random() < 0.5:
        outer = [(0, 0), (foot, 0), (r, h)]
    else:
        a = np.linspace(0, np.pi / 2, 8)[1:]
        outer = [(0, 0), (foot, 0), *np.stack([foot + (r - foot) * np.sin(a), h * (1 - np.cos(a))], 1)]
    t = r * rng.uniform(0.02, 0.04)
    b.add("shade", shell(outer, t, 40).translated((0, top, 0)), material=1)
    with_bulb = rng.random() < 0.5
    if with_bulb:
        bulb_r = min(h * 0.45, r * 0.25)
        b.add("bulb", P.sphere(bulb_r, 20).translated((0, top + t + bulb_r * 0.95, 0)), material=2)
    return dict(shade_style="bowl", bulb=bool(with_bulb))


def _reading_lamp(b: AssetBuilder, rng, base_top, pole_r):
    """Pole with a straight or flexible side arm holding a small shade."""
    top = np.array([0, rng.uniform(1.1, 1.5), 0])
    b.add("pole", rod((0, base_top - 0.005, 0), top, pole_r), material=0)
    arm_r = pole_r * rng.uniform(0.5, 0.8)
    tilt = rng.uniform(0.0, 0.9)
    flexible = rng.random() < 0.4
    if flexible:
        end = top + [0, rng.uniform(0.05, 0.25), rng.uniform(0.25, 0.45)]
        axis = np.array([0, -np.cos(tilt), np.sin(tilt)])
        path = bezier([top, top + [0, 0.2, 0.05], end - 0.15 * axis, end], 24)
        b.add("arm", P.tube(path, arm_r, 12), material=0)
    else:
        angle = rng.uniform(-0.4, 0.5)
        end = top + rng.uniform(0.25, 0.45) * np.array([0, np.sin(angle), np.cos(angle)])
        b.add("arm", rod(top, end, arm_r), material=0)
        if rng.random() < 0.6:
            b.add("joint", P.sphere(pole_r * rng.uniform(1.5, 2.2), 16).translated(top), material=0)
    shade_style = _pick(rng, SHADE_HEIGHT)
    with_bulb = rng.random() < 0.5
    shade, bulb = lamp_head(rng, shade_style, rng.uniform(0.06, 0.1), with_bulb)
    b.add("shade", _tilt(shade, tilt, end), material=1)
    if bulb is not None:
        b.add("bulb", _tilt(P.merge(bulb), tilt, end), material=2)
    return dict(shade_style=shade_style, flexible_arm=bool(flexible), bulb=bool(with_bulb))


# ---------------------------------------------------------------------------------------------
# Vessels
# ---------------------------------------------------------------------------------------------

def side_profile(r0: float, r1: float, height: float, bulge: float, y0: float = 0.0, count: int = 10):
    """Points up a vessel side from radius r0 at y0 to r1 at height, bulging by `bulge`."""
    s = np.linspace(0, 1, count)
    return np.stack([r0 + (r1 - r0) * s + bulge * np.sin(np.pi * s), y0 + (height - y0) * s], 1)


@category("mug")
def mug(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("mug", palette(rng, "ceramic", _pick(rng, ["ceramic", "plastic", "wood", "metal"])))
    height = rng.uniform(0.06, 0.12)
    r0 = rng.uniform(0.025, 0.05)
    shape = _pick(rng, ["straight", "flared", "tapered", "barrel", "belly"])
    r1 = r0 * {"straight": 1.0, "flared": rng.uniform(1.15, 1.4), "tapered": rng.uniform(0.75, 0.9),
               "barrel": rng.uniform(0.95, 1.05), "belly": rng.uniform(0.8, 0.95)}[shape]
    bulge = {"barrel": 0.12, "belly": 0.25}.get(shape, 0.0) * r0
    foot = r0 * rng.uniform(0.88, 0.97)
    outer = np.concatenate([[(0, 0), (foot, 0)], side_profile(r0, r1, height, bulge, height * 0.04)])
    wall = r0 * rng.uniform(0.07, 0.13)
    b.add("body", shell(outer, wall, 40), material=0)
    radius_at = _radius_fn(outer)

    handle_style = _pick(rng, ["round", "square", "ear", "tall"])
    span = {"round": (0.5, 0.7), "square": (0.5, 0.7), "ear": (0.25, 0.4), "tall": (0.7, 0.85)}[handle_style]
    h_span = height * rng.uniform(*span)
    y_top = height * rng.uniform(0.82, 0.9)
    depth = h_span * (rng.uniform(0.8, 1.4) if handle_style == "ear" else rng.uniform(0.4, 0.75))
    grip = rng.uniform(0.05, 0.11) * height
    path = loop_handle(radius_at, y_top - grip, y_top - grip - h_span, depth,
                       0.35 if handle_style in ("square", "tall") else 1.0, wall * 0.5)
    handle_mat = 0 if rng.random() < 0.8 else 1
    b.add("handle", P.tube(path, grip / 2, 12), material=handle_mat)

    extras = [name for name, p in (("saucer", 0.3), ("lid", 0.2), ("sleeve", 0.2)) if rng.random() < p]
    if "sleeve" in extras and handle_style == "tall":
        extras.remove("sleeve")
    if "saucer" in extras:
        b.add("saucer", _saucer(rng, r0), material=int(rng.integers(2)))
    if "lid" in extras:
        b.add("lid", _mug_lid(rng, r1, wall, height), material=1)
    if "sleeve" in extras:
        lo = height * rng.uniform(0.1, 0.2)
        b.add("sleeve", band(radius_at, lo, lo + height * rng.uniform(0.2, 0.35), wall * 0.8), material=1)
    b.params.update(shape=shape, handle_style=handle_style, extras=extras)
    return b


def _saucer(rng: np.random.Generator, r0: float) -> P.Mesh:
    """Shallow dish whose top face (flat well) sits at y = 0."""
    rs = r0 / rng.uniform(0.45, 0.58)
    th = rs * rng.uniform(0.04, 0.07)
    profile = [(0, -1.2 * th), (0.5 * rs, -1.2 * th), (0.55 * rs, -0.8 * th), (rs, 0.4 * th),
               (0.97 * rs, th), (0.6 * rs, 0.0), (0, 0.0)]
    return P.lathe(profile, 48)


def _mug_lid(rng: np.random.Generator, r1: float, wall: float, height: float) -> P.Mesh:
    """Plug lid resting on the rim, with an optional knob."""
    plug = r1 - wall * 1.2
    lid_h = height * rng.uniform(0.04, 0.08)
    lip = height * 0.06
    profile = [(0, height - lip), (plug, height - lip), (plug, height), (r1 * 1.03, height),
               (r1 * 1.03, height + lid_h * 0.5), (r1 * 0.9, height + lid_h)]
    if rng.random() < 0.6:
        knob = r1 * rng.uniform(0.12, 0.25)
        profile += [(knob, height + lid_h), (knob, height + lid_h + knob * 1.2)]
        return P.lathe(profile + [(0, height + lid_h + knob * 1.2)], 40)
    return P.lathe(profile + [(0, height + lid_h)], 40)


@category("bottle")
def bottle(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("bottle", palette(rng, _pick(rng, ["glass", "plastic"]),
                                       _pick(rng, ["metal", "plastic", "paint"]), _pick(rng, ["paint", "fabric"])))
    r = rng.uniform(0.025, 0.06)
    neck_r = r * rng.uniform(0.22, 0.5)
    body_h = r * rng.uniform(2.0, 6.0)
    side = _pick(rng, ["straight", "waisted", "bulged", "tapered"])
    shoulder = _pick(rng, ["round", "square", "long"])
    r_top = r * {"tapered": rng.uniform(0.7, 0.9), "bulged": 0.95}.get(side, 1.0)
    bulge = {"waisted": -rng.uniform(0.08, 0.18), "bulged": rng.uniform(0.08, 0.2)}.get(side, 0.0) * r
    side_pts = side_profile(r, r_top, body_h, bulge, r * 0.06, 12)
    sh_h = (r_top - neck_r) * {"round": rng.uniform(0.6, 1.2), "square": rng.uniform(0.25, 0.5),
                               "long": rng.uniform(1.5, 3.0)}[shoulder]
    q = {"round": 1.0, "square": 0.4, "long": 1.8}[shoulder]
    a = np.linspace(0, np.pi / 2, 10)[1:]
    shoulder_pts = np.stack([neck_r + (r_top - neck_r) * np.cos(a) ** q, body_h + sh_h * np.sin(a) ** q], 1)
    neck_top = body_h + sh_h + neck_r * rng.uniform(0.8, 4.0)
    lip = rng.random() < 0.6
    lip_r = neck_r * (1.15 if lip else 1.0)
    top_pts = [(neck_r, neck_top - neck_r * 0.5), (lip_r, neck_top - neck_r * 0.4), (lip_r, neck_top)]
    outer = np.concatenate([[(0, 0), (r * 0.9, 0)], side_pts, shoulder_pts, top_pts])
    b.add("body", P.lathe(np.concatenate([outer, [(0, neck_top)]]), 40), material=0)

    cap_style = _pick(rng, ["screw", "cork", "sport", "pump", "crown"])
    b.add("cap", _cap(rng, cap_style, lip_r, neck_top, neck_r), material=1)
    radius_at = _radius_fn(outer)
    label_t = r * 0.02
    labels = _pick(rng, ["body", "neck", "both"])
    neck_y0, neck_y1 = body_h + sh_h * rng.uniform(0.6, 0.9), neck_top - neck_r * 0.6
    if neck_y1 - neck_y0 < neck_r * 0.4:  # no room on a short neck
        labels = "body"
    has_handle = r > 0.04 and rng.random() < 0.3
    label_mat = 2 if labels == "both" or has_handle else 1  # a lone label shares the cap's colour
    if labels != "neck":
        y0 = body_h * rng.uniform(0.12, 0.35)
        b.add("label", band(radius_at, y0, y0 + body_h * rng.uniform(0.3, 0.6), label_t, 12), material=label_mat)
    if labels != "body":
        top = min(neck_y0 + neck_r * rng.uniform(0.6, 1.5), neck_y1)
        b.add("label", band(radius_at, neck_y0, top, label_t, 6), material=label_mat)
    if has_handle:
        y_top = body_h + sh_h * 0.5
        path = loop_handle(radius_at, y_top, y_top - body_h * 0.35, r * rng.uniform(0.35, 0.6),
                           rng.uniform(0.35, 1.0), r * 0.05)
        b.add("handle", P.tube(path, r * rng.uniform(0.08, 0.14), 12), material=0)
    b.params.update(side=side, shoulder=shoulder, cap_style=cap_style, lip=bool(lip), labels=labels,
                    handle=bool(has_handle))
    return b


def _cap(rng: np.random.Generator, style: str, lip_r: float, top: float, neck_r: float) -> list[P.Mesh]:
    """Closure over the neck top: screw cap, cork, sport nozzle, pump or crown cap."""
    if style == "cork":
        h = neck_r * rng.uniform(0.8, 1.6)
        return [P.cylinder(neck_r * 0.95, h, 24, radius_top=neck_r * 1.05).translated((0, top + h / 2, 0))]
    rc = lip_r * rng.uniform(1.1, 1.3)
    h = neck_r * ({"crown": rng.uniform(0.35, 0.5)}.get(style, rng.uniform(0.8, 1.8)))
    t = rc - lip_r * 1.02
    cap_top = top + t  # the inside of the cup rests on the neck top
    cup = shell([(0, cap_top), (rc, cap_top), (rc, cap_top - h)], t, 32)
    if style == "sport":
        nh = neck_r * rng.uniform(0.5, 1.0)
        return [cup, P.cylinder(rc * 0.5, nh, 20, radius_top=rc * 0.35).translated((0, cap_top + nh / 2, 0))]
    if style == "pump":
        stem_h = neck_r * rng.uniform(0.8, 2.0)
        head_y = cap_top + stem_h
        head = P.rounded_box((rc * 1.4, rc * 0.8, rc * 1.6), rc * 0.2).translated((0, head_y + rc * 0.4, 0))
        nozzle = rod((0, head_y + rc * 0.5, rc * 0.6), (0, head_y + rc * 0.4, rc * 0.8 + neck_r * 1.6), rc * 0.15)
        return [cup, rod((0, cap_top - 0.1 * t, 0), (0, head_y + 0.1 * t, 0), rc * 0.25), head, nozzle]
    return [cup]


@category("bucket")
def bucket(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("bucket", palette(rng, _pick(rng, ["metal", "plastic", "wood"]), _pick(rng, ["metal", "plastic"]),
                                       _pick(rng, ["wood", "plastic"])))
    height = rng.uniform(0.2, 0.4)
    r_top = height * rng.uniform(0.45, 0.75)
    r_bot = r_top * rng.uniform(0.65, 0.95)
    ribs = int(rng.integers(0, 4))
    side = side_profile(r_bot, r_top, height, 0.0, height * 0.02, 16)
    if ribs:  # reinforcing beads pressed into the wall
        for y in height * np.linspace(0.25, 0.75, ribs):
            side[:, 0] += r_top * 0.025 * np.exp(-(((side[:, 1] - y) / (height * 0.03)) ** 2))
    outer = np.concatenate([[(0, 0), (r_bot * 0.95, 0)], side])
    wall = r_top * rng.uniform(0.02, 0.04)
    b.add("body", shell(outer, wall, 48), material=0)
    radius_at = _radius_fn(outer)
    rim = rng.random() < 0.6
    if rim:
        b.add("rim", P.torus(r_top + wall * 0.2, wall * 1.2, 48, 10).translated((0, height, 0)), material=0)

    wire = r_top * rng.uniform(0.015, 0.035)
    lug_y = height * rng.uniform(0.78, 0.9)
    lug_r = float(radius_at(lug_y))
    lug_len = wire * rng.uniform(4, 7)
    lug_style = _pick(rng, ["boss", "tab"])
    lug = (P.cylinder(wire * 2.2, lug_len, 16).rotated("z", np.pi / 2) if lug_style == "boss"
           else P.box((lug_len, wire * 8, wire * 4)))
    for sgn in (-1, 1):
        b.add("lug", lug.translated((sgn * (lug_r + lug_len / 2 - wall), lug_y, 0)), material=1)

    reach = lug_r + lug_len * 0.7
    arch = rng.uniform(0.7, 1.3) * reach
    corner = wire * rng.uniform(2, 4)
    path = _bail(reach, arch, lug_r - wall, corner)
    fold = _fold_angle(rng, path, lug_y, radius_at, height + (wall if rim else 0), wire)
    hinge = np.array([0, lug_y, 0])
    b.add("handle", P.tube(path, wire, 10).transformed(P.rotation("x", fold)).translated(hinge), material=1)
    grip = rng.random() < 0.5
    if grip:
        t = np.linspace(np.pi / 2 - 0.25, np.pi / 2 + 0.25, 10) if reach > arch else \
            np.linspace(np.pi / 2 - 0.4, np.pi / 2 + 0.4, 10)
        grip_path = np.stack([reach * np.cos(t), corner + arch * np.sin(t), np.zeros_like(t)], 1)
        b.add("grip", P.tube(grip_path, wire * 2.5, 14).transformed(P.rotation("x", fold)).translated(hinge),
              material=2)
    b.params.update(ribs=ribs, rim=bool(rim), lug_style=lug_style, grip=bool(grip),
                    handle_fold_deg=round(float(np.degrees(fold)), 2))
    return b


def _bail(reach: float, arch: float, inner: float, corner: float) -> np.ndarray:
    """Wire bail in the XY plane: stubs through the lugs at y = 0, bending up into a half ellipse."""
    u = np.linspace(0, np.pi / 2, 5)[1:]
    bend = np.stack([reach - corner + corner * np.sin(u), corner - corner * np.cos(u)], 1)
    t = np.linspace(0, np.pi, 24)[1:-1]
    top = np.stack([reach * np.cos(t), corner + arch * np.sin(t)], 1)
    right = np.concatenate([[(inner, 0.0)], bend])
    xy = np.concatenate([right, top, right[::-1] * [-1, 1]])
    return np.c_[xy, np.zeros(len(xy))]


def _fold_angle(rng, path, lug_y, radius_at, top_y, wire) -> float:
    """Random tilt of the bail about the lug axis, reduced until it clears the bucket wall."""
    fold = rng.uniform(-1.2, 1.2) if rng.random() < 0.6 else 0.0
    for _ in range(12):
        p = path @ P.rotation("x", fold).T + [0, lug_y, 0]
        free = p[:, 1] > top_y + wire
        free |= np.hypot(p[:, 0], p[:, 2]) > radius_at(p[:, 1]) + wire
        if free[6:-6].all():  # the stubs pass through the lugs on purpose
            return float(fold)
        fold *= 0.8
    return 0.0
