"""Articulated objects posed at varied opening angles: laptops, hinged boxes, doors, scissors.

Each generator builds the moving parts in their closed pose, then turns them about the hinge;
the opening angle in degrees goes to `params["opening_deg"]`.
"""

from __future__ import annotations

import numpy as np

from engine.data import primitives as P
from engine.data.asset import AssetBuilder
from engine.data.categories import category
from engine.data.materials import palette


def _pick(rng: np.random.Generator, options) -> str:
    return str(rng.choice(list(options)))


def hinge_turn(mesh: P.Mesh, axis: str, angle: float, pivot) -> P.Mesh:
    """Rotate a mesh by `angle` radians about the principal `axis` through the point `pivot`."""
    pivot = np.asarray(pivot, dtype=np.float64)
    return mesh.translated(-pivot).rotated(axis, angle).translated(pivot)


def open_box(width: float, depth: float, height: float, wall: float, floor: float) -> P.Mesh:
    """Rectangular tray open at the top (outside on y = 0..height), as one closed surface.

    A four-sided lathe gives a square vessel; pushing its corners out by a constant keeps the
    walls `wall` thick while stretching the square to width x depth.
    """
    s = min(width, depth) / 2
    profile = np.array([(0, 0), (s, 0), (s, height), (s - wall, height), (s - wall, floor), (0, floor)])
    mesh = P.lathe(profile * [np.sqrt(2), 1], 4).rotated("y", np.pi / 4)
    v = mesh.vertices.copy()
    v[:, 0] += np.sign(np.round(v[:, 0], 12)) * (width / 2 - s)
    v[:, 2] += np.sign(np.round(v[:, 2], 12)) * (depth / 2 - s)
    return P.Mesh(v, mesh.faces)


def slab(rng: np.random.Generator, size, rounded: bool) -> P.Mesh:
    """Box, or a box with softly rounded edges."""
    return P.rounded_box(size, min(size) * rng.uniform(0.3, 0.49)) if rounded else P.box(size)


# ---------------------------------------------------------------------------------------------
# Laptop: hinge along X at the back edge of the base (z = -depth/2).
# ---------------------------------------------------------------------------------------------

@category("laptop")
def laptop(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("laptop", palette(rng, _pick(rng, ["metal", "plastic", "paint"]), "rubber"))
    width = rng.uniform(0.28, 0.4)
    depth = width * rng.uniform(0.62, 0.75)
    base_t = rng.uniform(0.012, 0.025)
    lid_t = rng.uniform(0.005, 0.011)
    rounded = rng.random() < 0.6
    opening = rng.uniform(20, 170)
    b.add("base", slab(rng, (width, base_t, depth), rounded).translated((0, base_t / 2, 0)), material=0)

    key_h = base_t * rng.uniform(0.1, 0.2)
    keyboard = _pick(rng, ["keys", "deck", "none"])
    if keyboard != "none":
        b.add("keyboard", _keyboard(rng, keyboard, width, depth, base_t, key_h), material=1)
    touchpad = rng.random() < 0.6
    if touchpad:
        pad = (width * rng.uniform(0.25, 0.4), key_h * 0.5, depth * rng.uniform(0.18, 0.25))
        z = depth / 2 - depth * 0.06 - pad[2] / 2
        b.add("touchpad", P.box(pad).translated((0, base_t + pad[1] / 2 - key_h * 0.2, z)),
              material=int(rng.integers(2)))

    screen_t = lid_t * 0.3  # display panel proud of the lid's inner face
    pivot = (0, base_t + screen_t, -depth / 2)
    angle = -np.radians(opening)
    lid = slab(rng, (width, lid_t, depth), rounded).translated((0, base_t + screen_t + lid_t / 2, 0))
    b.add("screen", hinge_turn(lid, "x", angle, pivot), material=0)
    display = rng.random() < 0.7
    if display:
        panel = P.box((width * rng.uniform(0.86, 0.94), screen_t, depth * rng.uniform(0.82, 0.9)))
        panel = panel.translated((0, base_t + screen_t / 2, depth * rng.uniform(0.0, 0.03)))
        b.add("display", hinge_turn(panel, "x", angle, pivot), material=1)
    hinge = _pick(rng, ["barrel", "pair", "none"])
    if hinge != "none":
        r = (base_t + lid_t) * rng.uniform(0.25, 0.35)
        if hinge == "barrel":
            barrels = [P.cylinder(r, width * rng.uniform(0.6, 0.9), 20).rotated("z", np.pi / 2)]
        else:
            one = P.cylinder(r, width * rng.uniform(0.08, 0.15), 20).rotated("z", np.pi / 2)
            barrels = [one.translated((s * width * rng.uniform(0.3, 0.38), 0, 0)) for s in (-1, 1)]
        b.add("hinge", [m.translated((0, base_t, -depth / 2 + r * 0.3)) for m in barrels],
              material=int(rng.integers(2)))
    b.params.update(opening_deg=round(float(opening), 2), keyboard=keyboard, touchpad=bool(touchpad),
                    display=bool(display), hinge=hinge, rounded=bool(rounded))
    return b


def _keyboard(rng, style: str, width: float, depth: float, base_t: float, key_h: float) -> P.Mesh:
    """Grid of key caps, or one raised key deck, on the back half of the base's top."""
    area_w, area_d = width * rng.uniform(0.8, 0.9), depth * rng.uniform(0.35, 0.45)
    z0 = -depth / 2 + depth * rng.uniform(0.08, 0.14) + area_d / 2
    y = base_t + key_h / 2 - key_h * 0.3
    if style == "deck":
        return P.box((area_w, key_h, area_d)).translated((0, y, z0))
    rows, cols = int(rng.integers(4, 7)), int(rng.integers(10, 16))
    pitch_x, pitch_z = area_w / cols, area_d / rows
    key = P.box((pitch_x * 0.8, key_h, pitch_z * 0.8))
    xs = (np.arange(cols) - (cols - 1) / 2) * pitch_x
    zs = (np.arange(rows) - (rows - 1) / 2) * pitch_z + z0
    return P.merge([key.translated((x, y, z)) for x in xs for z in zs])


# ---------------------------------------------------------------------------------------------
# Hinged box: hinge along X at the top of the back wall.
# ---------------------------------------------------------------------------------------------

@category("hinged_box")
def hinged_box(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("hinged_box", palette(rng, _pick(rng, ["wood", "metal", "plastic", "paint"]), "metal",
                                           _pick(rng, ["wood", "paint", "fabric"])))
    width = rng.uniform(0.15, 0.5)
    depth = width * rng.uniform(0.5, 1.0)
    height = width * rng.uniform(0.25, 0.7)
    wall = min(width, depth) * rng.uniform(0.03, 0.07)
    opening = rng.uniform(0, 120)
    b.add("body", open_box(width, depth, height, wall, wall), material=0)

    lid_style = _pick(rng, ["flat", "chest", "lipped"])
    over = width * rng.uniform(0.0, 0.03) if lid_style != "chest" else 0.0
    lid_t = wall * rng.uniform(1.0, 2.0)
    lid, lid_top = _box_lid(rng, lid_style, width, depth, height, wall, lid_t, over)
    handle = _pick(rng, ["none", "top", "sides"])
    feet = rng.random() < 0.4
    latch = rng.random() < 0.6
    hinge = rng.random() < 0.6
    budget = 8 - 2 - (4 if feet else 0) - (2 if handle == "sides" else 1 if handle == "top" else 0)
    latch, hinge = latch and budget >= 1, hinge and budget >= 1 + int(latch)

    pivot = (0, height, -depth / 2 - over)
    angle = -np.radians(opening)
    if handle == "top":
        lid.append(_knob_or_bar(rng, width, lid_top))
    fittings = int(latch) + int(hinge) + (2 if handle == "sides" else 0) + (4 if feet else 0)
    accent = fittings >= 2 and rng.random() < 0.4  # an odd-coloured lid only when colours still repeat
    b.add("lid", hinge_turn(P.merge(lid), "x", angle, pivot), material=2 if accent else 0)
    if latch:
        plate = (width * rng.uniform(0.06, 0.12), height * rng.uniform(0.15, 0.3), wall * 0.6)
        b.add("latch", P.box(plate).translated((0, height - plate[1] / 2, depth / 2 + plate[2] / 2)), material=1)
    if hinge:
        r = wall * rng.uniform(0.5, 0.8)
        knuckle = P.cylinder(r, width * rng.uniform(0.1, 0.2), 16).rotated("z", np.pi / 2)
        spread = width * rng.uniform(0.25, 0.35)
        b.add("hinge", [knuckle.translated((s * spread, height, -depth / 2 - over - r * 0.3)) for s in (-1, 1)],
              material=1)
    if handle == "sides":
        ring = P.torus(height * rng.uniform(0.12, 0.2), wall * 0.5, 24, 8).rotated("z", np.pi / 2)
        ring_r = float(ring.vertices[:, 1].max())
        for s in (-1, 1):
            b.add("handle", ring.translated((s * (width / 2 + wall * 0.45), height * 0.75 - ring_r * 0.6, 0)),
                  material=1)
    if feet:
        foot_h = height * rng.uniform(0.05, 0.12)
        if rng.random() < 0.5:  # ball feet, or short cylinders; both just reach into the floor
            foot = P.sphere(foot_h, 12).translated((0, -foot_h * 0.85, 0))
        else:
            foot = P.cylinder(foot_h, foot_h * 1.5, 16).translated((0, -foot_h * 0.7, 0))
        inset = foot_h * 1.2
        for sx in (-1, 1):
            for sz in (-1, 1):
                b.add("foot", foot.translated((sx * (width / 2 - inset), 0, sz * (depth / 2 - inset))), material=1)
    b.params.update(opening_deg=round(float(opening), 2), lid_style=lid_style, handle=handle, feet=bool(feet),
                    latch=bool(latch), hinge=bool(hinge))
    return b


def _box_lid(rng, style, width, depth, height, wall, lid_t, over) -> tuple[list[P.Mesh], float]:
    """Closed lid resting on the rim: flat slab, domed chest lid, or slab with a plug; and its top y."""
    size = (width + 2 * over, lid_t, depth + 2 * over)
    if style == "chest":
        rise = depth * rng.uniform(0.15, 0.45)
        a = np.linspace(0, np.pi, 17)
        arch = np.stack([-depth / 2 * np.cos(a), rise * np.sin(a)], 1)  # across the depth
        dome = P.extrude(arch, width).rotated("y", -np.pi / 2).translated((0, height, 0))
        return [dome], height + rise
    top = slab(rng, size, rng.random() < 0.4).translated((0, height + lid_t / 2, 0))
    if style == "flat":
        return [top], height + lid_t
    plug_h = wall * rng.uniform(1.0, 2.5)
    gap = wall * 0.15
    plug = P.box((width - 2 * (wall + gap), plug_h, depth - 2 * (wall + gap))).translated((0, height - plug_h / 2, 0))
    return [top, plug], height + lid_t


def _knob_or_bar(rng, width, top) -> P.Mesh:
    """Knob or bail-bar handle standing on the lid's top at its centre."""
    if rng.random() < 0.5:
        r = width * rng.uniform(0.03, 0.06)
        return P.merge([P.cylinder(r * 0.5, r, 12).translated((0, top + r * 0.4, 0)),
                        P.sphere(r, 16).translated((0, top + r * 1.6, 0))])
    half = width * rng.uniform(0.1, 0.2)
    lift = half * rng.uniform(0.3, 0.6)
    wire = half * rng.uniform(0.06, 0.1)
    path = [(-half, top - wire, 0), (-half, top + lift, 0), (half, top + lift, 0), (half, top - wire, 0)]
    return P.tube(np.array(path), wire, 10)


# ---------------------------------------------------------------------------------------------
# Door: hinge along Y at the left jamb, on the frame's front face (z = +depth/2).
# ---------------------------------------------------------------------------------------------

@category("door")
def door(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("door", palette(rng, _pick(rng, ["wood", "paint"]), "metal",
                                     _pick(rng, ["wood", "paint", "glass"])))
    width, height = rng.uniform(0.75, 1.0), rng.uniform(1.9, 2.3)
    thick = rng.uniform(0.035, 0.05)
    jamb = rng.uniform(0.05, 0.12)
    depth = thick * rng.uniform(1.2, 3.5)
    gap = 0.004
    sill = rng.uniform(0.015, 0.03) if rng.random() < 0.4 else 0.0
    inner_w, inner_h = width / 2 + gap, sill + height + 2 * gap
    outer_w, outer_h = inner_w + jamb, inner_h + jamb
    frame = P.extrude([(-outer_w, 0), (-inner_w, 0), (-inner_w, inner_h), (inner_w, inner_h), (inner_w, 0),
                       (outer_w, 0), (outer_w, outer_h), (-outer_w, outer_h)], depth)
    b.add("frame", frame, material=int(rng.choice([0, 2])))
    if sill:
        b.add("threshold", P.box((2 * inner_w, sill, depth)).translated((0, sill / 2, 0)), material=1)

    opening = rng.uniform(0, 100)
    z = depth / 2 - thick / 2  # leaf flush with the frame's front face
    bottom = sill + gap
    style = _pick(rng, ["flat", "panel", "glazed"])
    leaf, panes = _leaf(rng, style, width, height, thick)
    pivot = (-width / 2, 0, depth / 2)
    angle = -np.radians(opening)

    def place(meshes):
        return hinge_turn(P.merge([m.translated((0, bottom, z)) for m in meshes]), "y", angle, pivot)

    b.add("leaf", place(leaf), material=0)
    if panes:
        b.add("window", place(panes), material=2)
    handle_style = _pick(rng, ["lever", "knob", "pull"])
    knob_x = width / 2 - rng.uniform(0.05, 0.08)
    front = _door_handle(rng, handle_style).translated((knob_x, rng.uniform(0.95, 1.05), thick / 2))
    b.add("handle", place([front, front.scaled((1, 1, -1))]), material=1)
    hinges = int(rng.integers(2, 4))
    knuckle_h = rng.uniform(0.07, 0.12)
    knuckle = P.cylinder(rng.uniform(0.007, 0.012), knuckle_h, 16)
    b.add("hinge", [knuckle.translated((-width / 2, bottom + y, depth / 2))
                    for y in np.linspace(0.15, 0.85, hinges) * height], material=1)
    b.params.update(opening_deg=round(float(opening), 2), leaf_style=style, handle_style=handle_style,
                    hinges=hinges, threshold=bool(sill))
    return b


def _leaf(rng, style, width, height, thick) -> tuple[list[P.Mesh], list[P.Mesh]]:
    """Door leaf standing on y = 0, centred on x and z; plus glass panes for a glazed leaf."""
    if style == "flat":
        return [P.box((width, height, thick)).translated((0, height / 2, 0))], []
    stile = width * rng.uniform(0.12, 0.2)
    rows = int(rng.integers(1, 4)) if style == "glazed" else int(rng.integers(2, 5))
    cols = 1 if style == "glazed" else int(rng.integers(1, 3))
    if style == "panel":
        slab = P.box((width, height, thick)).translated((0, height / 2, 0))
        pw = (width - stile * (cols + 1)) / cols
        ph = (height - stile * (rows + 1)) / rows
        t = thick * rng.uniform(0.1, 0.2)
        raised = P.box((pw, ph, t))
        panels = [raised.translated((-width / 2 + stile + pw / 2 + c * (pw + stile),
                                     stile + ph / 2 + r * (ph + stile), s * (thick + t) / 2))
                  for r in range(rows) for c in range(cols) for s in (-1, 1)]
        return [slab] + panels, []
    # glazed: stiles and rails around `rows` glass panes in the upper part of the leaf
    glass_from = height * rng.uniform(0.0, 0.5) + stile
    ph = (height - glass_from - stile * rows) / rows
    pane_w = width - 2 * stile
    wood = [P.box((stile, height, thick)).translated((s * (width - stile) / 2, height / 2, 0)) for s in (-1, 1)]
    wood.append(P.box((pane_w, glass_from, thick)).translated((0, glass_from / 2, 0)))
    ys = [glass_from + ph + r * (ph + stile) for r in range(rows)]
    wood += [P.box((pane_w, stile, thick)).translated((0, y + stile / 2, 0)) for y in ys]
    panes = [P.box((pane_w, ph, thick * 0.3)).translated((0, y - ph / 2, 0)) for y in ys]
    return wood, panes


def _door_handle(rng, style) -> P.Mesh:
    """One face's handle standing out along +Z from z = 0, centred on its mounting point."""
    rose = P.cylinder(rng.uniform(0.025, 0.035), 0.01, 20).rotated("x", np.pi / 2).translated((0, 0, 0.005))
    if style == "pull":
        length = rng.uniform(0.25, 0.5)
        out = rng.uniform(0.04, 0.06)
        r = rng.uniform(0.008, 0.014)
        bar = P.cylinder(r, length, 16).translated((0, 0, out))
        posts = [P.cylinder(r * 0.8, out, 12).rotated("x", np.pi / 2).translated((0, y, out / 2))
                 for y in (-length * 0.4, length * 0.4)]
        return P.merge([bar] + posts)
    neck_len = rng.uniform(0.03, 0.05)
    neck = P.cylinder(0.007, neck_len, 12).rotated("x", np.pi / 2).translated((0, 0, 0.01 + neck_len / 2))
    tip = 0.01 + neck_len
    if style == "knob":
        r = rng.uniform(0.022, 0.032)
        return P.merge([rose, neck, P.sphere(r, 16).translated((0, 0, tip + r * 0.8))])
    lever = P.tube(np.array([(0, 0, tip), (-rng.uniform(0.09, 0.13), 0, tip + 0.005)]), rng.uniform(0.007, 0.01))
    return P.merge([rose, neck, lever])


# ---------------------------------------------------------------------------------------------
# Scissors: lying flat (pivot axis Y), blades pointing +Z, pivot screw at the origin.
# ---------------------------------------------------------------------------------------------

@category("scissors")
def scissors(rng: np.random.Generator) -> AssetBuilder:
    b = AssetBuilder("scissors", palette(rng, "metal", _pick(rng, ["plastic", "rubber", "paint"])))
    length = rng.uniform(0.14, 0.26)
    blade_len = length * rng.uniform(0.48, 0.62)
    thick = length * rng.uniform(0.012, 0.02)
    root = blade_len * rng.uniform(0.12, 0.2)
    tip = _pick(rng, ["pointed", "blunt"])
    blade = _blade(rng, blade_len, root, thick, tip)
    ring_a = length * rng.uniform(0.05, 0.09)
    grip = _pick(rng, ["rings", "loop", "uneven"])
    rr = thick * rng.uniform(0.6, 1.2)
    all_metal = rng.random() < 0.3
    opening = rng.uniform(5, 60)
    bend = blade_len * rng.uniform(0.05, 0.12) if rng.random() < 0.3 else 0.0  # curved (nail) scissors
    handle_len = length - blade_len
    for side in (1, -1):  # side 1: upper piece, blade to +X when opened
        shape = (ring_a, ring_a * rng.uniform(1.0, 1.3))
        if grip == "loop" or (grip == "uneven" and side == -1):
            shape = (ring_a * rng.uniform(1.0, 1.2), ring_a * rng.uniform(1.6, 2.2))
        handle = _handle(shape, rr, handle_len, root)
        piece_blade = blade.translated((0, thick / 2, 0))
        piece_handle = handle.translated((0, rr, 0))
        if side == -1:  # the lower piece: the upper one turned over (half a turn about Z)
            piece_blade, piece_handle = piece_blade.scaled((-1, -1, 1)), piece_handle.scaled((-1, -1, 1))
        turn = side * np.radians(opening) / 2
        b.add("blade", _bend(piece_blade, bend, blade_len).rotated("y", turn), material=0)
        b.add("handle", piece_handle.rotated("y", turn), material=0 if all_metal else 1)
    screw_r = root * rng.uniform(0.12, 0.18)
    head_r = screw_r * rng.uniform(1.6, 2.4)
    head_h = thick * rng.uniform(0.3, 0.6)
    b.add("pivot", P.lathe([(0, -thick - head_h), (head_r, -thick - head_h * 0.4), (head_r, -thick),
                            (screw_r, -thick), (screw_r, thick), (head_r, thick), (head_r, thick + head_h * 0.4),
                            (0, thick + head_h)], 20), material=0)
    b.params.update(opening_deg=round(float(opening), 2), tip=tip, grip=grip, all_metal=bool(all_metal),
                    curved=bool(bend))
    return b


def _blade(rng, length: float, root: float, thick: float, tip: str) -> P.Mesh:
    """Flat blade along +Z, cutting edge on its -X side, pivot hole region at the origin."""
    shift = root * 0.35  # pivot sits inside the blade root
    edge = -shift
    back_curve = rng.uniform(1.2, 2.5)
    y = np.linspace(0, 1, 12) * length
    tip_w = 0.0 if tip == "pointed" else root * rng.uniform(0.2, 0.35)
    back = np.stack([edge + tip_w + (root - tip_w) * (1 - (y / length) ** back_curve), y], 1)
    base_r = root * 0.6
    outline = [(edge, -base_r), (edge + root * 0.8, -base_r), *back[:-1]]
    if tip == "pointed":
        outline.append((edge, length))
    else:  # rounded nose from the back edge over to the cutting edge
        a = np.linspace(0, np.pi, 8)
        outline += list(np.stack([edge + tip_w / 2 + tip_w / 2 * np.cos(a), length + tip_w / 2 * np.sin(a)], 1))
    # the cutting edge, slightly convex, with enough points to follow a bend
    y = np.linspace(length, 0, 10)[1:]
    outline += list(np.stack([edge - root * 0.03 * np.sin(np.pi * y / length), y], 1))
    return P.extrude(outline, thick).rotated("x", np.pi / 2)


def _bend(mesh: P.Mesh, amount: float, length: float) -> P.Mesh:
    """Curve a blade lying along +Z sideways (+X) by `amount` at its tip."""
    v = mesh.vertices.copy()
    v[:, 0] += amount * (np.clip(v[:, 2], 0, None) / length) ** 2
    return P.Mesh(v, mesh.faces)


def _handle(shape, rr: float, handle_len: float, root: float) -> P.Mesh:
    """Finger ring (ellipse in XZ, on the -X side) plus the shank that joins it to the blade root."""
    ax, az = shape
    centre = np.array([-(ax + rr * 1.2), 0, -(handle_len - az - rr)])
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ring = P.tube(np.stack([centre[0] + ax * np.cos(t), np.zeros_like(t), centre[2] + az * np.sin(t)], 1),
                  rr, 10, closed=True)
    start = np.array([0.0, 0, -root * 0.35])
    end = centre + [0, 0, az + rr * 0.3]
    mid = (start + end) / 2 + [0, 0, (end[2] - start[2]) * 0.1]
    t = np.linspace(0, 1, 10)[:, None]
    path = (1 - t) ** 2 * start + 2 * t * (1 - t) * mid + t ** 2 * end
    return P.merge([ring, P.tube(path, rr * 0.9, 10)])
