"""Furniture: chairs, tables, stools, sofas, beds, shelves, cabinets.

Units are roughly metres (the builder rescales), +Y up, fronts facing +Z. Repeated parts are
built once and translated so they share a mesh_id; repeated small pieces that would push an
object past 8 parts (stretchers, handles, sofa feet) are merged into a single part.
"""

from __future__ import annotations

import numpy as np

from engine.data import primitives as P
from engine.data.asset import AssetBuilder
from engine.data.categories import category
from engine.data.materials import palette

LEG_STYLES = ("square", "round", "tapered", "tapered_square")
PANEL_STYLES = ("panel", "arched", "upholstered", "slats", "ladder", "spindles")
# (height, length, width) ranges per table kind.
TABLE_SIZES = {
    "dining": ((0.72, 0.78), (1.0, 2.2), (0.75, 1.05)),
    "coffee": ((0.35, 0.48), (0.8, 1.4), (0.45, 0.8)),
    "side": ((0.45, 0.7), (0.4, 0.65), (0.4, 0.65)),
    "desk": ((0.72, 0.76), (1.0, 1.6), (0.55, 0.8)),
    "bar": ((0.95, 1.1), (0.6, 1.2), (0.5, 0.8)),
}


# ----------------------------------------------------------------------------- shared helpers


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about an arbitrary axis (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def _align_y(direction) -> np.ndarray:
    """Rotation taking +Y onto the unit vector `direction`."""
    d = np.asarray(direction, float)
    axis = np.cross([0.0, 1.0, 0.0], d)
    if np.linalg.norm(axis) < 1e-9:
        return np.eye(3) if d[1] > 0 else np.diag([1.0, -1.0, -1.0])
    return _axis_angle(axis, float(np.arctan2(np.linalg.norm(axis), d[1])))


def _choice(rng: np.random.Generator, options, p=None) -> str:
    return str(rng.choice(options, p=p))


def leg(style: str, height: float, width: float, taper: float = 0.7) -> P.Mesh:
    """One leg centred at the origin along Y: square, round, or narrowing to `taper` at the foot."""
    if style == "square":
        return P.box((width, height, width))
    if style == "round":
        return P.cylinder(width / 2, height, 16)
    if style == "tapered":
        return P.cylinder(width / 2 * taper, height, 16, radius_top=width / 2)
    # A 4-sided frustum, turned so its faces line up with the X/Z axes.
    r = width / np.sqrt(2)
    return P.cylinder(r * taper, height, 4, radius_top=r).rotated("y", np.pi / 4)


def rod(a, b, width: float, round_: bool = True) -> P.Mesh:
    """Round or square bar of the given width from point a to point b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    length = float(np.linalg.norm(b - a))
    mesh = P.cylinder(width / 2, length, 12) if round_ else P.box((width, length, width))
    return mesh.transformed(_align_y((b - a) / length)).translated((a + b) / 2)


def plank(a, b, thick: float, height: float) -> P.Mesh:
    """Upright board (apron, rail) running horizontally from a to b, centred on that segment."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    mesh = P.box((float(np.hypot(d[0], d[2])), height, thick))
    return mesh.rotated("y", float(np.arctan2(-d[2], d[0]))).translated((a + b) / 2)


def slab(plan, thickness: float) -> P.Mesh:
    """Horizontal plate from an (x, z) outline, centred on y = 0."""
    swap_yz = np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    return P.extrude(plan, thickness).transformed(swap_yz)


def rounded_rect(width: float, depth: float, radius: float, n: int = 6) -> np.ndarray:
    """Outline of a rectangle with rounded corners, as (x, z) points."""
    r = min(radius, 0.49 * width, 0.49 * depth)
    hx, hz = width / 2 - r, depth / 2 - r
    pts = []
    for k, (cx, cz) in enumerate([(hx, hz), (-hx, hz), (-hx, -hz), (hx, -hz)]):
        t = np.linspace(0, np.pi / 2, n) + k * np.pi / 2
        pts.append(np.c_[cx + r * np.cos(t), cz + r * np.sin(t)])
    return np.concatenate(pts)


def smooth(points, closed: bool, iterations: int = 3, split: int = 1) -> np.ndarray:
    """Chaikin corner cutting: rounds the bends of a polyline (end points kept when open).

    Each segment is first split into `split` pieces, which keeps the rounding near the corners.
    """
    given = np.asarray(points, float)
    q = np.roll(given, -1, 0) if closed else given[1:]
    t = np.arange(split)[None, :, None] / split
    p = (given[:len(q), None] * (1 - t) + q[:, None] * t).reshape(-1, 3)
    if not closed:
        p = np.vstack([p, given[-1:]])
    for _ in range(iterations):
        a, q = (p, np.roll(p, -1, 0)) if closed else (p[:-1], p[1:])
        cut = np.stack([0.75 * a + 0.25 * q, 0.25 * a + 0.75 * q], 1).reshape(-1, 3)
        p = cut if closed else np.vstack([p[:1], cut, p[-1:]])
    return p


def corners(hx: float, hz: float) -> list[np.ndarray]:
    """The four (x, 0, z) corners of a rectangle, in order around it."""
    return [np.array([sx * hx, 0.0, sz * hz]) for sx, sz in ((1, 1), (-1, 1), (-1, -1), (1, -1))]


def upright_panel(rng: np.random.Generator, style: str, width: float, height: float, thick: float,
                  bottom: float = 0.0) -> list[P.Mesh]:
    """Chair back / headboard: bottom edge on y = 0, centred on x and z, facing +Z.

    Framed styles (slats, ladder, spindles) have two side posts; their infill starts at
    `bottom` (a bottom rail is added there when it is above 0).
    """
    if style == "panel":
        return [P.box((width, height, thick)).translated((0, height / 2, 0))]
    if style == "arched":
        rise = height * rng.uniform(0.1, 0.3)
        t = np.linspace(0, np.pi, 17)
        top = np.c_[width / 2 * np.cos(t), height - rise + rise * np.sin(t)]
        return [P.extrude(np.r_[[[-width / 2, 0], [width / 2, 0]], top], thick)]
    if style == "upholstered":
        return [P.rounded_box((width, height, thick), thick * 0.45).translated((0, height / 2, 0))]
    post = thick * rng.uniform(1.0, 1.6)
    inner = width - 2 * post
    rail = rng.uniform(0.04, 0.1) * height
    meshes = [P.box((post, height, thick)).translated((s * (width - post) / 2, height / 2, 0)) for s in (-1, 1)]
    if bottom > 0:
        meshes.append(P.box((inner, rail, thick)).translated((0, bottom - rail / 2, 0)))
    n = int(rng.integers(2, 6)) if style == "ladder" else int(rng.integers(3, 8))
    if style == "ladder":
        lo = bottom + (height - bottom) * rng.uniform(0.25, 0.5)
        for y in np.linspace(lo, height - rail / 2, n):
            meshes.append(P.box((inner, rail, thick * 0.7)).translated((0, y, 0)))
        return meshes
    meshes.append(P.box((inner, rail, thick)).translated((0, height - rail / 2, 0)))
    span = height - rail - bottom
    xs = -inner / 2 + (np.arange(n) + 0.5) * inner / n
    if style == "slats":
        piece = P.box((inner / n * rng.uniform(0.3, 0.6), span, thick * 0.6))
    else:  # spindles: thin turned rods
        piece = P.cylinder(thick * rng.uniform(0.2, 0.35), span, 10)
    meshes += [piece.translated((x, bottom + span / 2, 0)) for x in xs]
    return meshes


def curved_panel(width: float, height: float, thick: float, bend: float) -> P.Mesh:
    """Back bent around a vertical axis, its ends curving forward (+Z); bottom on y = 0."""
    radius = width / (2 * np.sin(bend))
    t = np.linspace(-bend, bend, 13)
    outer = np.c_[radius * np.sin(t), radius * (1 - np.cos(t))]
    inner = np.c_[(radius - thick) * np.sin(t[::-1]), radius * (1 - np.cos(t[::-1])) + thick * np.cos(t[::-1])]
    plan = np.r_[outer, inner]
    plan[:, 1] -= thick / 2
    return slab(plan, height).translated((0, height / 2, 0))


# ----------------------------------------------------------------------------- categories


@category("stool")
def stool(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("stool", palette(rng, rng.choice(["wood", "metal"]), rng.choice(["wood", "fabric", "plastic"])))
    height = rng.uniform(0.45, 0.8)
    seat_r = rng.uniform(0.16, 0.24)
    seat_t = rng.uniform(0.03, 0.08)
    round_seat = rng.random() < 0.6
    seat = P.cylinder(seat_r, seat_t, 32) if round_seat else P.box((2 * seat_r, seat_t, 2 * seat_r))
    b.add("seat", seat.translated((0, height - seat_t / 2, 0)), material=1)
    n_legs = int(rng.choice([3, 4]))
    style = _choice(rng, ["square", "round", "tapered"])
    leg_w = rng.uniform(0.02, 0.05)  # slender legs are a deliberate hard case
    taper = rng.uniform(0.6, 0.85)
    leg_h = height - seat_t
    splay = rng.uniform(0.0, 0.12)
    base = leg(style, leg_h, leg_w, taper)
    for k in range(n_legs):
        a = 2 * np.pi * k / n_legs + (np.pi / 4 if n_legs == 4 else 0)
        foot = (seat_r * 0.8 + splay) * np.array([np.cos(a), 0, np.sin(a)])
        top = seat_r * 0.7 * np.array([np.cos(a), 0, np.sin(a)])
        if splay > 0.03:  # splayed legs: tilt towards the foot; geometry differs per leg
            d = top + np.array([0, leg_h, 0]) - foot
            mesh = leg(style, float(np.linalg.norm(d)), leg_w, taper).transformed(_align_y(d / np.linalg.norm(d)))
            b.add("leg", mesh.translated((foot + top + [0, leg_h, 0]) / 2), material=0)
        else:
            b.add("leg", base.translated(top + [0, leg_h / 2, 0]), material=0)
    if rng.random() < 0.5:
        ring_y = leg_h * rng.uniform(0.25, 0.45)
        r = seat_r * 0.7 + splay * (1 - ring_y / leg_h) * 0.8 + (seat_r * 0.1 if splay > 0.03 else 0)
        b.add("footrest", P.torus(r, leg_w * 0.4, 48, 10).translated((0, ring_y, 0)), material=0)
    b.params.update(legs=n_legs, leg_style=style, round_seat=bool(round_seat))
    return b


def _stretchers(rng: np.random.Generator, feet: list[np.ndarray], y: float, width: float,
                round_: bool) -> tuple[str, list[P.Mesh]]:
    """Bars joining four legs at height y: a ring ("box"), an "H", or crossed diagonals ("X")."""
    style = _choice(rng, ["box", "H", "X"])
    up = np.array([0, y, 0])
    if style == "box":
        return style, [rod(feet[k] + up, feet[(k + 1) % 4] + up, width, round_) for k in range(4)]
    if style == "X":
        return style, [rod(feet[0] + up, feet[2] + up, width, round_), rod(feet[1] + up, feet[3] + up, width, round_)]
    sides = [rod(feet[0] + up, feet[3] + up, width, round_), rod(feet[1] + up, feet[2] + up, width, round_)]
    mid = [(feet[0] + feet[3]) / 2 + up, (feet[1] + feet[2]) / 2 + up]
    return style, sides + [rod(mid[0], mid[1], width, round_)]


def _chair_arm(rng: np.random.Generator, style: str, height: float, width: float, z0: float, z1: float) -> P.Mesh:
    """One armrest standing on the seat (y = 0) from z0 (back) to z1 (front), centred on x = 0."""
    zc, depth = (z0 + z1) / 2, z1 - z0
    if style == "panel":
        return P.rounded_box((width, height, depth), width * 0.3).translated((0, height / 2, zc))
    if style == "loop":
        r = width * rng.uniform(0.2, 0.35)
        path = [(0, r, z0 + 2 * r), (0, height - r, z0 + 2 * r), (0, height - r, z1 - r), (0, r, z1 - r)]
        return P.tube(smooth(path, closed=False), r, 10)
    pad_t = rng.uniform(0.02, 0.04)
    post = width * rng.uniform(0.5, 0.9)
    return P.merge([P.box((width, pad_t, depth)).translated((0, height - pad_t / 2, zc)),
                    P.box((post, height - pad_t, post)).translated((0, (height - pad_t) / 2, z1 - width / 2))])


def _swivel_base(rng: np.random.Generator, radius: float) -> tuple[str, P.Mesh, float]:
    """Office-chair base: spokes on casters or a disc. Returns (style, mesh, top height)."""
    if rng.random() < 0.3:
        t = rng.uniform(0.02, 0.04)
        return "disc", P.cylinder(radius * 0.8, t, 40, radius_top=radius * 0.7).translated((0, t / 2, 0)), t
    n = int(rng.choice([4, 5]))
    caster = rng.uniform(0.02, 0.03)
    t = rng.uniform(0.025, 0.045)
    y = 2 * caster + t / 2
    spoke = P.box((radius, t, t * 1.3)).translated((radius / 2, y, 0))
    wheel = P.sphere(caster, 12).translated((radius - caster, caster, 0))
    parts = [P.cylinder(t * 1.4, t * 1.5, 20).translated((0, y, 0))]
    for k in range(n):
        a = 2 * np.pi * k / n + np.pi / 2
        parts += [spoke.rotated("y", a), wheel.rotated("y", a)]
    return f"{n}_spoke", P.merge(parts), y + t * 0.75


@category("chair")
def chair(rng: np.random.Generator) -> AssetBuilder:
    frame = _choice(rng, ["wood", "metal", "plastic"], p=[0.55, 0.3, 0.15])
    b = AssetBuilder("chair", palette(rng, frame, rng.choice(["wood", "fabric", "plastic"])))
    support = _choice(rng, ["legs", "sled", "pedestal"], p=[0.64, 0.16, 0.2])
    seat_style = _choice(rng, ["board", "cushion", "round"] if support != "sled" else ["board", "cushion"])
    w, d = rng.uniform(0.38, 0.56), rng.uniform(0.36, 0.52)
    seat_h = rng.uniform(0.4, 0.5)
    st = rng.uniform(0.05, 0.1) if seat_style == "cushion" else rng.uniform(0.018, 0.045)
    if seat_style == "round":
        w = d = (w + d) / 2
        seat = P.cylinder(w / 2, st, 40)
    elif seat_style == "cushion":
        seat = P.rounded_box((w, st, d), st * 0.4)
    else:
        seat = P.box((w, st, d))
    b.add("seat", seat.translated((0, seat_h - st / 2, 0)), material=1)

    # Back: sits on the rear edge of the seat, optionally reclined.
    back_style = _choice(rng, PANEL_STYLES + ("curved",))
    back_h = rng.uniform(0.25, 0.55)
    back_t = rng.uniform(0.05, 0.09) if back_style == "upholstered" else rng.uniform(0.015, 0.035)
    back_w = w * (0.7 if seat_style == "round" else rng.uniform(0.85, 1.0))
    if back_style == "curved":
        back = [curved_panel(back_w, back_h, back_t, rng.uniform(0.3, 0.8))]
    else:
        back = upright_panel(rng, back_style, back_w, back_h, back_t)
    tilt = rng.uniform(0.0, 0.25)
    back_z = -(d / 2) * (0.8 if seat_style == "round" else 1.0) + back_t / 2
    b.add("back", [m.rotated("x", -tilt).translated((0, seat_h, back_z)) for m in back],
          material=int(back_style in ("upholstered", "panel", "curved")))

    leg_h = seat_h - st
    n_parts = 2
    if support == "legs":
        style = _choice(rng, LEG_STYLES)
        lw = rng.uniform(0.02, 0.05)
        if seat_style == "round":
            hx = hz = w / 2 * rng.uniform(0.55, 0.65)
        else:
            inset = lw / 2 + rng.uniform(0.0, 0.03) + (st * 0.4 if seat_style == "cushion" else 0.0)
            hx, hz = w / 2 - inset, d / 2 - inset
        feet = corners(hx, hz)
        one = leg(style, leg_h, lw, rng.uniform(0.5, 0.8))
        for f in feet:
            b.add("leg", one.translated(f + [0, leg_h / 2, 0]), material=0)
        n_parts += 4
        b.params.update(leg_style=style)
    elif support == "sled":
        r = rng.uniform(0.007, 0.014)
        zf, zb, spread = d / 2 - 0.04, -d / 2 + 0.04, rng.uniform(0.0, 0.06)
        loop = [(0, leg_h - r, zf), (0, r, zf + spread), (0, r, zb - spread), (0, leg_h - r, zb)]
        runner = P.tube(smooth(loop, closed=True, split=4), r, 10, closed=True)
        for s in (-1, 1):
            b.add("leg", runner.translated((s * (w / 2 - 0.03), 0, 0)), material=0)
        n_parts += 2
    else:
        base_style, base, base_top = _swivel_base(rng, rng.uniform(0.22, 0.32))
        b.add("base", base, material=0)
        col_r = rng.uniform(0.02, 0.04)
        b.add("leg", P.cylinder(col_r, leg_h - base_top, 20).translated((0, (leg_h + base_top) / 2, 0)), material=0)
        n_parts += 2
        b.params.update(base_style=base_style)

    arms = seat_style != "round" and rng.random() < 0.35
    if arms:
        arm_style = _choice(rng, ["post", "panel", "loop"])
        aw = rng.uniform(0.03, 0.07)
        arm = _chair_arm(rng, arm_style, rng.uniform(0.16, 0.26), aw, -d / 2 + back_t, d / 2 - rng.uniform(0, 0.05))
        for s in (-1, 1):
            b.add("armrest", arm.translated((s * (w - aw) / 2, seat_h, 0)), material=0)
        n_parts += 2
        b.params.update(arm_style=arm_style)
    stretcher = support == "legs" and n_parts < 8 and rng.random() < 0.5
    if stretcher:
        sw = lw * rng.uniform(0.35, 0.6)
        kind, bars = _stretchers(rng, feet, leg_h * rng.uniform(0.15, 0.4), sw, style in ("round", "tapered"))
        b.add("stretcher", bars, material=0)
        b.params.update(stretcher_style=kind)
    b.params.update(support=support, seat_style=seat_style, back_style=back_style, armrests=bool(arms),
                    stretcher=bool(stretcher), recline=float(tilt))
    return b


def _table_top(rng: np.random.Generator, shape: str, length: float, width: float, thick: float) -> P.Mesh:
    """Table top centred at the origin: rect, rounded rect, round or oval."""
    if shape == "rect":
        return P.box((length, thick, width))
    if shape == "rounded":
        return slab(rounded_rect(length, width, min(length, width) * rng.uniform(0.05, 0.3)), thick)
    return P.cylinder(0.5, thick, 48).scaled((length, 1, width))


def _turned_column(rng: np.random.Generator, radius: float, height: float) -> P.Mesh:
    """Lathe-turned column with random bulges and collars, centred on the origin."""
    ys = np.linspace(0, height, int(rng.integers(5, 9)))
    radii = radius * rng.uniform(0.6, 1.4, len(ys))
    radii[0] = radii[-1] = radius * 1.2
    profile = [(0.0, 0.0)] + list(zip(radii, ys)) + [(0.0, height)]
    return P.lathe(profile, 24).translated((0, -height / 2, 0))


def _table_foot(rng: np.random.Generator, style: str, radius: float, thick: float) -> P.Mesh:
    """Pedestal foot resting on y = 0: a disc, or 3 / 4 radiating feet."""
    if style == "disc":
        return P.cylinder(radius, thick, 48, radius_top=radius * rng.uniform(0.6, 1.0)).translated((0, thick / 2, 0))
    n = 3 if style == "tripod" else 4
    foot = P.box((radius, thick, thick * rng.uniform(0.8, 1.6))).translated((radius / 2, thick / 2, 0))
    return P.merge([foot.rotated("y", 2 * np.pi * k / n + np.pi / 4) for k in range(n)])


@category("table")
def table(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("table", palette(rng, _choice(rng, ["wood", "glass", "ceramic", "paint"], p=[0.55, 0.1, 0.1, 0.25]),
                                      rng.choice(["wood", "metal"])))
    kind = _choice(rng, ["dining", "coffee", "side", "desk", "bar"])
    h, length, width = (rng.uniform(lo, hi) for lo, hi in TABLE_SIZES[kind])
    shape = _choice(rng, ["rect", "rounded", "round", "oval"] if kind != "desk" else ["rect", "rounded"])
    if shape == "round":
        length = width = (length + width) / 2
    tt = rng.uniform(0.02, 0.06)
    b.add("top", _table_top(rng, shape, length, width, tt).translated((0, h - tt / 2, 0)), material=0)
    leg_h = h - tt
    supports = ["legs", "pedestal", "trestle", "slab"]
    weights = np.array([0.5, 0.2 if (shape in ("round", "oval") or length < 1.3) else 0.0,
                        0.15 if (shape != "round" and length > 0.9) else 0.0,
                        0.15 if shape in ("rect", "rounded") else 0.0])
    support = _choice(rng, supports, p=weights / weights.sum())
    b.params.update(kind=kind, top_shape=shape, support=support)

    if support == "legs":
        style = _choice(rng, LEG_STYLES)
        lw = rng.uniform(0.025, 0.08)
        n_legs = 3 if shape == "round" and rng.random() < 0.3 else 4
        if n_legs == 3:
            r = length / 2 * rng.uniform(0.6, 0.85)
            feet = [r * np.array([np.cos(a), 0, np.sin(a)]) for a in np.pi / 2 + 2 * np.pi * np.arange(3) / 3]
        elif shape in ("round", "oval"):
            k = rng.uniform(0.65, 0.9) / np.sqrt(2)
            feet = corners(length / 2 * k, width / 2 * k)
        else:
            inset = lw / 2 + rng.uniform(0.0, 0.12)
            feet = corners(length / 2 - inset, width / 2 - inset)
        one = leg(style, leg_h, lw, rng.uniform(0.45, 0.8))
        for f in feet:
            b.add("leg", one.translated(f + [0, leg_h / 2, 0]), material=1)
        apron = rng.random() < 0.55
        if apron:
            ah, at = rng.uniform(0.05, 0.14) * min(1.0, h / 0.5), lw * rng.uniform(0.4, 0.7)
            boards = []
            for k in range(n_legs):
                a, c = feet[k], feet[(k + 1) % n_legs]
                u = (c - a) / np.linalg.norm(c - a) * lw / 2
                boards.append(plank(a + u, c - u, at, ah).translated((0, leg_h - ah / 2, 0)))
            b.add("apron", boards, material=1)
        low = _choice(rng, ["none", "stretcher", "shelf"] if n_legs == 4 else ["none", "stretcher"])
        if low == "stretcher":
            bars_y = leg_h * rng.uniform(0.12, 0.35)
            round_ = style in ("round", "tapered")
            if n_legs == 4:
                kind_s, bars = _stretchers(rng, feet, bars_y, lw * rng.uniform(0.35, 0.6), round_)
            else:
                kind_s = "ring"
                up = np.array([0, bars_y, 0])
                bars = [rod(feet[k] + up, feet[(k + 1) % 3] + up, lw * 0.5, round_) for k in range(3)]
            b.add("stretcher", bars, material=1)
            b.params.update(stretcher_style=kind_s)
        elif low == "shelf":
            sh = rng.uniform(0.015, 0.03)
            sy = leg_h * rng.uniform(0.1, 0.3)
            b.add("shelf", P.box((2 * abs(feet[0][0]), sh, 2 * abs(feet[0][2]))).translated((0, sy, 0)), material=0)
        b.params.update(leg_style=style, legs=n_legs, apron=bool(apron), lower=low)
    elif support == "pedestal":
        foot_style = _choice(rng, ["disc", "cross", "tripod"])
        ft = rng.uniform(0.02, 0.05)
        col_style = _choice(rng, ["cylinder", "tapered", "turned"])
        cr = rng.uniform(0.03, 0.08)
        col_h = leg_h - ft
        if col_style == "turned":
            column = _turned_column(rng, cr, col_h)
        else:
            column = P.cylinder(cr * (1.0 if col_style == "cylinder" else 1.6), col_h, 24, radius_top=cr)
        b.add("leg", column.translated((0, ft + col_h / 2, 0)), material=1)
        b.add("base", _table_foot(rng, foot_style, min(length, width) / 2 * rng.uniform(0.5, 0.8), ft), material=1)
        b.params.update(column_style=col_style, foot_style=foot_style)
    elif support == "trestle":
        end_style = _choice(rng, ["T", "X"])
        ex = length / 2 - rng.uniform(0.06, 0.2)
        pw = rng.uniform(0.03, 0.08)
        span = width * rng.uniform(0.6, 0.85)
        if end_style == "T":
            fh = rng.uniform(0.03, 0.06)
            end = P.merge([P.box((pw, leg_h - 2 * fh, pw * 1.5)).translated((0, leg_h / 2, 0)),
                           P.box((pw * 1.3, fh, span)).translated((0, fh / 2, 0)),
                           P.box((pw, fh, span)).translated((0, leg_h - fh / 2, 0))])
        else:
            lo, hi = pw / 2, leg_h - pw / 2
            end = P.merge([rod((0, lo, -span / 2), (0, hi, span / 2), pw, False),
                           rod((0, lo, span / 2), (0, hi, -span / 2), pw, False)])
        for s in (-1, 1):
            b.add("leg", end.translated((s * ex, 0, 0)), material=1)
        sy = leg_h * (0.5 if end_style == "X" else rng.uniform(0.15, 0.5))
        b.add("stretcher", P.box((2 * ex, pw * rng.uniform(0.8, 1.5), pw * 0.6)).translated((0, sy, 0)), material=1)
        b.params.update(end_style=end_style)
    else:
        pt = rng.uniform(0.025, 0.07)
        ex = length / 2 - pt / 2 - (0.0 if rng.random() < 0.5 else rng.uniform(0.03, 0.15))
        panel = P.box((pt, leg_h, width * rng.uniform(0.75, 1.0))).translated((0, leg_h / 2, 0))
        for s in (-1, 1):
            b.add("leg", panel.translated((s * ex, 0, 0)), material=0)
        if rng.random() < 0.4:
            sh = rng.uniform(0.015, 0.04)
            b.add("shelf", P.box((2 * ex - pt, sh, width * 0.7)).translated((0, leg_h * rng.uniform(0.1, 0.4), 0)),
                  material=0)
    return b


def _sofa_arm(rng: np.random.Generator, style: str, width: float, height: float, depth: float) -> P.Mesh:
    """One sofa arm resting on y = 0, centred on x and z."""
    if style == "box":
        return P.box((width, height, depth)).translated((0, height / 2, 0))
    if style == "rounded":
        return P.rounded_box((width, height, depth), width * rng.uniform(0.2, 0.45)).translated((0, height / 2, 0))
    # Roll arm: a block topped by a cylinder along Z.
    r = width * rng.uniform(0.5, 0.65)
    roll = P.cylinder(r, depth, 24).rotated("x", np.pi / 2).translated((0, height - r, 0))
    return P.merge([P.box((width, height - r, depth)).translated((0, (height - r) / 2, 0)), roll])


@category("sofa")
def sofa(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("sofa", palette(rng, "fabric", _choice(rng, ["wood", "metal"]), "fabric"))
    seats = int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4]))
    seat_w = seats * rng.uniform(0.55, 0.72)
    depth = rng.uniform(0.8, 1.0)
    feet = _choice(rng, ["none", "block", "round", "tapered"])
    foot_h = 0.0 if feet == "none" else (rng.uniform(0.12, 0.22) if feet == "tapered" else rng.uniform(0.04, 0.12))
    seat_h = rng.uniform(0.4, 0.48)
    cush_t = rng.uniform(0.1, 0.2)
    base_top = seat_h - cush_t
    arm_style = _choice(rng, ["none", "box", "rounded", "roll", "slim"], p=[0.12, 0.28, 0.25, 0.2, 0.15])
    arm_w = 0.0 if arm_style == "none" else (rng.uniform(0.04, 0.08) if arm_style == "slim" else rng.uniform(0.1, 0.25))
    total_w = seat_w + 2 * arm_w
    back_t = rng.uniform(0.12, 0.25)
    back_top = seat_h + rng.uniform(0.25, 0.5)
    seat_d = depth - back_t
    zc = depth / 2 - seat_d / 2  # centre of the seat area in z

    base_r = rng.uniform(0.0, 0.04)
    base = P.rounded_box((seat_w, base_top - foot_h, seat_d), base_r) if base_r > 0.01 else P.box((seat_w, base_top - foot_h, seat_d))
    b.add("base", base.translated((0, (base_top + foot_h) / 2, zc)), material=0)

    # The back either spans the full width behind the arms or sits between full-depth arms.
    wrap = arm_style != "none" and rng.random() < 0.35
    back_h = back_top - foot_h
    back = P.rounded_box((seat_w if wrap else total_w, back_h, back_t), back_t * rng.uniform(0.1, 0.45))
    tilt = rng.uniform(0.0, 0.15)
    pivot = np.array([0, 0, back_t / 2])  # recline about the bottom front edge
    back = back.translated((0, back_h / 2, 0) - pivot).rotated("x", -tilt).translated(pivot)
    b.add("back", back.translated((0, foot_h, -depth / 2 + back_t / 2)), material=0)

    if arm_style != "none":
        tuxedo = rng.random() < 0.2
        arm_h = (back_top if tuxedo else seat_h + rng.uniform(0.12, 0.25)) - foot_h
        arm = _sofa_arm(rng, "box" if arm_style == "slim" else arm_style, arm_w, arm_h, depth if wrap else seat_d)
        for s in (-1, 1):
            b.add("arm", arm.translated((s * (seat_w + arm_w) / 2, foot_h, 0 if wrap else zc)), material=0)

    cw = seat_w / seats
    cushion = P.rounded_box((cw - 0.01, cush_t + 0.01, seat_d - 0.01), cush_t * rng.uniform(0.15, 0.45))
    for k in range(seats):
        x = -seat_w / 2 + (k + 0.5) * cw
        b.add("cushion", cushion.translated((x, base_top + cush_t / 2 - 0.005, zc)), material=2)
    # Loose back cushions (also labelled "cushion") rest on the seat cushions, where parts allow.
    n_parts = 2 + 2 * (arm_style != "none") + 2 * seats + (feet != "none")
    back_cushions = n_parts <= 8 and rng.random() < 0.6
    if back_cushions:
        bc_h, bc_t = (back_top - seat_h) * rng.uniform(0.7, 1.0), rng.uniform(0.1, 0.18)
        pad = P.rounded_box((cw - 0.01, bc_h, bc_t), bc_t * rng.uniform(0.2, 0.45))
        for k in range(seats):
            x = -seat_w / 2 + (k + 0.5) * cw
            b.add("cushion", pad.translated((x, seat_h + bc_h / 2 - 0.005, -depth / 2 + back_t + bc_t / 2)), material=2)

    if feet != "none":
        fw = rng.uniform(0.04, 0.08) if feet != "block" else rng.uniform(0.06, 0.12)
        style = {"block": "square", "round": "round", "tapered": "tapered"}[feet]
        one = leg(style, foot_h, fw, rng.uniform(0.5, 0.8)).translated((0, foot_h / 2, 0))
        inset = fw / 2 + rng.uniform(0.01, 0.06)
        b.add("leg", [one.translated(c) for c in corners(total_w / 2 - inset, depth / 2 - inset)], material=1)
    b.params.update(seats=seats, arm_style=arm_style, feet=feet, back_between_arms=bool(wrap),
                    back_cushions=bool(back_cushions), recline=float(tilt))
    return b


@category("bed")
def bed(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("bed", palette(rng, _choice(rng, ["wood", "paint", "metal"], p=[0.6, 0.25, 0.15]),
                                    _choice(rng, ["light", "fabric"]), "fabric"))
    width, length = rng.uniform(0.9, 2.0), rng.uniform(1.9, 2.2)
    legs = rng.random() < 0.4
    leg_h = rng.uniform(0.08, 0.3) if legs else 0.0
    frame_style = _choice(rng, ["rails", "platform"])
    head_style = _choice(rng, PANEL_STYLES)
    board_mat = 2 if head_style == "upholstered" else 0  # upholstered beds: fabric frame and boards
    frame_h = rng.uniform(0.12, 0.3)
    frame_top = leg_h + frame_h
    mat_t = rng.uniform(0.15, 0.3)
    if frame_style == "rails":
        rt = rng.uniform(0.03, 0.06)
        sink = frame_h * rng.uniform(0.3, 0.7)
        rails = [plank(a, c, rt, frame_h) for a, c in (
            ((-width / 2 + rt / 2, 0, -length / 2), (-width / 2 + rt / 2, 0, length / 2)),
            ((width / 2 - rt / 2, 0, -length / 2), (width / 2 - rt / 2, 0, length / 2)),
            ((-width / 2 + rt, 0, -length / 2 + rt / 2), (width / 2 - rt, 0, -length / 2 + rt / 2)),
            ((-width / 2 + rt, 0, length / 2 - rt / 2), (width / 2 - rt, 0, length / 2 - rt / 2)))]
        n_slats = int(rng.integers(6, 14))
        slat = P.box((width - 2 * rt, 0.02, (length - 2 * rt) / n_slats * 0.5))
        zs = -length / 2 + rt + (np.arange(n_slats) + 0.5) * (length - 2 * rt) / n_slats
        support_y = frame_top - sink
        frame = [r.translated((0, leg_h + frame_h / 2, 0)) for r in rails]
        frame += [slat.translated((0, support_y - 0.01, z)) for z in zs]
        mat_w, mat_l, mat_y = width - 2 * rt, length - 2 * rt, support_y
    else:
        frame = [P.box((width, frame_h, length)).translated((0, leg_h + frame_h / 2, 0))]
        margin = rng.uniform(0.0, 0.05)
        mat_w, mat_l, mat_y = width - 2 * margin, length - 2 * margin, frame_top
    b.add("frame", frame, material=board_mat)
    mattress = P.rounded_box((mat_w, mat_t, mat_l), mat_t * rng.uniform(0.1, 0.4))
    b.add("mattress", mattress.translated((0, mat_y + mat_t / 2, 0)), material=1)
    mat_top = mat_y + mat_t

    head_t = rng.uniform(0.08, 0.15) if head_style == "upholstered" else rng.uniform(0.03, 0.06)
    head_h = mat_top + rng.uniform(0.3, 0.9)
    head = upright_panel(rng, head_style, width, head_h, head_t, bottom=frame_top)
    b.add("headboard", [m.translated((0, 0, -length / 2 - head_t / 2)) for m in head], material=board_mat)
    n_parts = 3
    if legs:
        lw = rng.uniform(0.04, 0.09)
        one = leg(_choice(rng, LEG_STYLES), leg_h, lw, rng.uniform(0.5, 0.8))
        for c in corners(width / 2 - lw / 2, length / 2 - lw / 2):
            b.add("leg", one.translated(c + [0, leg_h / 2, 0]), material=0)
        n_parts += 4
    wanted = int(rng.choice([0, 1, 2], p=[0.15, 0.35, 0.5])) if mat_w > 1.25 else int(rng.random() < 0.8)
    pillows = min(wanted, 8 - n_parts)
    footboard = n_parts + pillows < 8 and rng.random() < 0.45
    if footboard:
        foot_h = max(mat_top + rng.uniform(-0.1, 0.35), frame_top + 0.25)
        foot = upright_panel(rng, head_style, width, foot_h, head_t, bottom=frame_top)
        b.add("footboard", [m.translated((0, 0, length / 2 + head_t / 2)) for m in foot],
              material=board_mat)
    if pillows:
        pw = min(rng.uniform(0.5, 0.75), (mat_w - 0.06) / pillows - 0.04)
        ph, pd = rng.uniform(0.08, 0.16), rng.uniform(0.3, 0.45)
        pillow = P.rounded_box((pw, ph, pd), ph * rng.uniform(0.3, 0.49))
        z = -mat_l / 2 + pd / 2 + rng.uniform(0.02, 0.08)
        for k in range(pillows):
            x = 0.0 if pillows == 1 else (k - 0.5) * (pw + 0.04)
            b.add("pillow", pillow.translated((x, mat_top + ph / 2 - 0.01, z)), material=2)
    b.params.update(frame_style=frame_style, legs=bool(legs), headboard_style=head_style,
                    footboard=bool(footboard), pillows=pillows)
    return b


@category("shelf")
def shelf(rng: np.random.Generator) -> AssetBuilder:
    style = _choice(rng, ["bookcase", "rack", "ladder"], p=[0.5, 0.25, 0.25])
    b = AssetBuilder("shelf", palette(rng, _choice(rng, ["wood", "paint"]) if style != "rack" else "metal",
                                      _choice(rng, ["wood", "paint", "plastic"])))
    width, height, depth = rng.uniform(0.4, 1.2), rng.uniform(0.6, 2.0), rng.uniform(0.2, 0.4)
    bt = rng.uniform(0.015, 0.04)
    if style == "bookcase":
        st = rng.uniform(0.015, 0.035)
        back = rng.random() < 0.6
        bk = rng.uniform(0.004, 0.012) if back else 0.0
        n = int(rng.integers(3, 7 - int(back)))
        side = P.box((st, height, depth)).translated((0, height / 2, 0))
        for s in (-1, 1):
            b.add("side", side.translated((s * (width - st) / 2, 0, 0)), material=0)
        kick = rng.uniform(0.0, 0.1)
        board = P.box((width - 2 * st, bt, depth - bk))
        for y in np.linspace(kick + bt / 2, height - bt / 2, n):
            b.add("board", board.translated((0, y, bk / 2)), material=1)
        if back:
            b.add("back", P.box((width - 2 * st, height - kick, bk)).translated((0, (height + kick) / 2, -(depth - bk) / 2)),
                  material=0)
        b.params.update(back=bool(back), boards=n)
    elif style == "rack":
        pw = rng.uniform(0.01, 0.03)
        round_posts = rng.random() < 0.5
        post = P.cylinder(pw / 2, height, 12) if round_posts else P.box((pw, height, pw))
        for c in corners((width - pw) / 2, (depth - pw) / 2):
            b.add("post", post.translated(c + [0, height / 2, 0]), material=0)
        n = int(rng.integers(2, 5))
        board = P.box((width, bt * 0.6, depth))
        lo = rng.uniform(0.03, 0.2) * height
        for y in np.linspace(lo, height - bt * 0.3, n):
            b.add("board", board.translated((0, y, 0)), material=1)
        b.params.update(round_posts=bool(round_posts), boards=n)
    else:  # ladder: two leaning rails, boards getting shallower towards the top
        rw = rng.uniform(0.025, 0.05)
        foot_z = depth + rng.uniform(0.05, 0.25)
        rail = rod((0, 0, foot_z), (0, height, 0), rw, round_=False)
        for s in (-1, 1):
            b.add("side", rail.translated((s * (width - rw) / 2, 0, 0)), material=0)
        n = int(rng.integers(3, 7))
        for y in np.linspace(rng.uniform(0.1, 0.25) * height, height * rng.uniform(0.8, 0.92), n):
            d = foot_z * (1 - y / height)
            b.add("board", P.box((width - 2 * rw, bt, d)).translated((0, y, d / 2)), material=1)
        b.params.update(boards=n)
    b.params.update(style=style)
    return b


def _handle(rng: np.random.Generator, style: str, size: float, vertical: bool) -> P.Mesh:
    """A knob or bar pull sticking out of a front along +Z from z = 0, centred on x and y."""
    if style == "knob":
        r = size * 0.1
        return P.merge([P.cylinder(r * 0.4, r * 1.5, 12).rotated("x", np.pi / 2).translated((0, 0, r * 0.75)),
                        P.sphere(r, 12).translated((0, 0, r * 2.2))])
    half, stand, r = size / 2, size * 0.25, size * rng.uniform(0.03, 0.06)
    path = smooth([(-half, 0, 0), (-half, 0, stand), (half, 0, stand), (half, 0, 0)], closed=False, iterations=2)
    bar = P.tube(path, r, 8)
    return bar.rotated("z", np.pi / 2) if vertical else bar


@category("cabinet")
def cabinet(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("cabinet", palette(rng, _choice(rng, ["wood", "paint"]), _choice(rng, ["wood", "paint"]), "metal"))
    width, height, depth = rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.8), rng.uniform(0.3, 0.6)
    pt = rng.uniform(0.015, 0.03)
    layout = _choice(rng, ["doors", "drawers", "mixed", "open"])
    handle_style = _choice(rng, ["knob", "bar", "none"], p=[0.4, 0.4, 0.2])
    # Fronts as (x centre, y centre, width, height, kind); y measured from the body's bottom.
    gap, ft = 0.004, rng.uniform(0.015, 0.025)
    fronts: list[tuple[float, float, float, float, str]] = []
    interior_y = None
    if layout == "drawers":
        cols = 2 if width > 0.9 and height < 1.1 and rng.random() < 0.5 else 1
        rows = int(np.clip(round(height / rng.uniform(0.15, 0.35)), 2, 3 if cols == 2 else 5))
        dw, dh = width / cols, height / rows
        fronts = [(-width / 2 + (c + 0.5) * dw, (r + 0.5) * dh, dw - gap, dh - gap, "drawer")
                  for r in range(rows) for c in range(cols)]
    else:
        top = 0.0
        if layout == "mixed":
            top = height * rng.uniform(0.15, 0.3)
        elif layout == "open":
            top = height * rng.uniform(0.35, 0.6)
            interior_y = height - top / 2
        n_doors = 2 if width > 0.6 else 1
        door_h, dw = height - top, width / n_doors
        fronts = [(-width / 2 + (k + 0.5) * dw, door_h / 2, dw - gap, door_h - gap, "door") for k in range(n_doors)]
        if layout == "mixed":
            n_dr = 2 if width > 0.9 else 1
            fronts += [(-width / 2 + (k + 0.5) * width / n_dr, height - top / 2, width / n_dr - gap, top - gap, "drawer")
                       for k in range(n_dr)]
    has_handle = handle_style != "none"
    base_style = _choice(rng, ["legs", "plinth", "none"])
    room = 8 - 1 - len(fronts) - has_handle
    if base_style == "legs" and room < 4:
        base_style = "plinth" if room >= 1 else "none"
    elif base_style == "plinth" and room < 1:
        base_style = "none"
    lift = 0.0 if base_style == "none" else rng.uniform(*{"legs": (0.08, 0.25), "plinth": (0.04, 0.12)}[base_style])

    # Carcass open at the front: sides, top, bottom, back (and a shelf behind an open section).
    body = [P.box((pt, height, depth)).translated((s * (width - pt) / 2, height / 2, 0)) for s in (-1, 1)]
    inner = width - 2 * pt
    body += [P.box((inner, pt, depth)).translated((0, y, 0)) for y in (pt / 2, height - pt / 2)]
    body.append(P.box((inner, height - 2 * pt, pt)).translated((0, height / 2, -(depth - pt) / 2)))
    if interior_y is not None:
        body.append(P.box((inner, pt, depth - pt)).translated((0, interior_y, pt / 2)))
    overhang = rng.uniform(0.01, 0.05) if rng.random() < 0.4 else 0.0
    if overhang:  # a separate, wider top board over the carcass
        tt = rng.uniform(0.02, 0.04)
        body.append(P.box((width + 2 * overhang, tt, depth + overhang)).translated((0, height + tt / 2, overhang / 2)))
    b.add("body", [m.translated((0, lift, 0)) for m in body], material=0)

    front_mat = int(rng.integers(0, 2)) if len(fronts) > 1 else 0
    for x, y, w, h, kind in fronts:  # equal sizes give identical boxes, hence shared mesh_ids
        b.add(kind, P.box((w, h, ft)).translated((x, lift + y, (depth + ft) / 2)), material=front_mat)
    if has_handle:
        handles = []
        for x, y, w, h, kind in fronts:
            vertical = kind == "door"
            size = min(0.18, 0.35 * (h if vertical else w))
            hx = x if not vertical else x + (w / 2 - 0.05) * (-np.sign(x) if x != 0 else 1)
            hy = y + (h * 0.3 if vertical and h > 0.5 else 0.0)
            handles.append(_handle(rng, handle_style, size, vertical).translated((hx, lift + hy, depth / 2 + ft)))
        b.add("handle", handles, material=2)
    if base_style == "legs":
        lw = rng.uniform(0.03, 0.06)
        one = leg(_choice(rng, LEG_STYLES), lift, lw, rng.uniform(0.5, 0.8))
        for c in corners(width / 2 - lw, depth / 2 - lw):
            b.add("leg", one.translated(c + [0, lift / 2, 0]), material=0)
    elif base_style == "plinth":
        inset = rng.uniform(0.01, 0.05)
        b.add("base", P.box((width - 2 * inset, lift, depth - 2 * inset)).translated((0, lift / 2, 0)), material=0)
    b.params.update(layout=layout, fronts=len(fronts), handle_style=handle_style, base_style=base_style,
                    top_overhang=bool(overhang))
    return b
