"""Vehicles: cars and airplanes."""

from __future__ import annotations

import numpy as np

from engine.data import primitives as P
from engine.data.asset import AssetBuilder
from engine.data.categories import category
from engine.data.materials import palette


def _pick(rng: np.random.Generator, options) -> str:
    return str(rng.choice(list(options)))


def rod(a, b, radius: float, segments: int = 10) -> P.Mesh:
    """Straight capped rod from point a to point b."""
    return P.tube(np.array([a, b], dtype=np.float64), radius, segments)


def wheel(radius: float, width: float, hub: float, recess: float) -> P.Mesh:
    """Tyre with bevelled shoulders and a hub recessed on both faces; axle along Y."""
    h, bevel = width / 2, radius * 0.08
    return P.lathe([(0, -h + recess), (hub, -h + recess), (hub, -h), (radius - bevel, -h),
                    (radius, -h + bevel), (radius, h - bevel), (radius - bevel, h), (hub, h),
                    (hub, h - recess), (0, h - recess)], 28)


# ---------------------------------------------------------------------------------------------
# Car: built with X along the length (rear at x = 0), Z across; turned to face +Z at the end.
# ---------------------------------------------------------------------------------------------

CAR_STYLES = {  # length, wheel radius, clearance/wheel, body height, cabin height,
    #             cabin base (rear, front) as fractions of the length, windscreen and rear-window runs
    "sedan": ((4.2, 5.0), (0.30, 0.36), (0.5, 0.8), (0.55, 0.7), (0.45, 0.55), (0.22, 0.3), (0.66, 0.72),
              (0.1, 0.15), (0.08, 0.14)),
    "hatchback": ((3.6, 4.4), (0.29, 0.34), (0.5, 0.8), (0.55, 0.7), (0.48, 0.6), (0.01, 0.04), (0.6, 0.68),
                  (0.1, 0.14), (0.03, 0.08)),
    "suv": ((4.2, 5.0), (0.36, 0.44), (0.8, 1.05), (0.7, 0.85), (0.5, 0.65), (0.01, 0.04), (0.64, 0.7),
            (0.08, 0.12), (0.02, 0.05)),
    "pickup": ((4.8, 5.6), (0.36, 0.44), (0.8, 1.05), (0.7, 0.85), (0.5, 0.62), (0.36, 0.42), (0.62, 0.68),
               (0.06, 0.1), (0.0, 0.02)),
    "sports": ((4.0, 4.7), (0.30, 0.35), (0.4, 0.6), (0.4, 0.5), (0.33, 0.42), (0.18, 0.26), (0.58, 0.64),
               (0.14, 0.2), (0.12, 0.22)),
    "van": ((4.5, 5.4), (0.32, 0.38), (0.6, 0.9), (0.6, 0.75), (0.8, 1.0), (0.01, 0.03), (0.74, 0.82),
            (0.1, 0.16), (0.0, 0.02)),
}


CAR_TO_OBJECT = P.rotation("y", -np.pi / 2)  # car frame (X forward, Z across) -> front towards +Z


def _arch(x: float, wheel_r: float, arch_r: float, bottom: float) -> np.ndarray:
    """Wheel-arch cut-out along the body's bottom edge, from rear to front."""
    b0 = np.arcsin(np.clip((bottom - wheel_r) / arch_r, -1, 1))
    phi = np.linspace(np.pi - b0, b0, 11)
    return np.stack([x + arch_r * np.cos(phi), wheel_r + arch_r * np.sin(phi)], 1)


@category("car")
def car(rng: np.random.Generator) -> AssetBuilder:
    style = _pick(rng, list(CAR_STYLES) + ["toy"])
    b = AssetBuilder("car", palette(rng, "paint", "rubber", _pick(rng, ["metal", "glass"])))
    geo = (CAR_STYLES["hatchback"] if style == "toy" else CAR_STYLES[style])
    length = rng.uniform(*geo[0]) * (0.8 if style == "toy" else 1.0)
    width = length * rng.uniform(0.37, 0.43)
    wheel_r = rng.uniform(*geo[1]) * (1.15 if style == "toy" else 1.0)
    bottom = wheel_r * rng.uniform(*geo[2])
    axles = (length * rng.uniform(0.15, 0.22), length * rng.uniform(0.78, 0.85))
    arch_r = wheel_r * rng.uniform(1.06, 1.16)
    belt = max(bottom + rng.uniform(*geo[3]), wheel_r + arch_r + rng.uniform(0.05, 0.15))
    roof = belt + rng.uniform(*geo[4])
    cab = (length * rng.uniform(*geo[5]), length * rng.uniform(*geo[6]))
    runs = (length * rng.uniform(*geo[8]), length * rng.uniform(*geo[7]))
    to_obj = CAR_TO_OBJECT
    wheel_w = wheel_r * rng.uniform(0.55, 0.75) * (1.2 if style == "toy" else 1.0)
    if style == "toy":
        body, cabin, shape = _toy_body(rng, length, width, bottom, belt, roof, cab)
        track = width / 2 + wheel_w * 0.3
    else:
        body, cabin, shape = _car_body(rng, length, width, bottom, belt, roof, cab, runs, axles, wheel_r, arch_r)
        track = width / 2 - wheel_w * rng.uniform(0.3, 0.5)
    b.add("body", body.transformed(to_obj), material=0)
    b.add("cabin", cabin.transformed(to_obj), material=2 if rng.random() < 0.3 else 0)
    tyre = wheel(wheel_r, wheel_w, wheel_r * rng.uniform(0.55, 0.72), wheel_w * rng.uniform(0.05, 0.15))
    tyre = tyre.transformed(P.rotation("x", np.pi / 2)).transformed(to_obj)
    for x in axles:
        for side in (-1, 1):
            b.add("wheel", tyre.translated(to_obj @ (x, wheel_r, side * track)), material=1)

    options = [name for name, p in (("spoiler", 0.35), ("roof_rack", 0.3), ("lights", 0.5)) if rng.random() < p]
    if style in ("suv", "van", "pickup", "toy", "hatchback") and "spoiler" in options:
        options.remove("spoiler")
    if (style in ("sports", "toy") or shape["roof_len"] < 0.6) and "roof_rack" in options:
        options.remove("roof_rack")
    if style == "toy" and "lights" in options:
        options.remove("lights")
    if len(options) > 2:  # at most 8 parts
        options.remove(_pick(rng, options))
    if "spoiler" in options:
        b.add("spoiler", P.merge(_spoiler(rng, length, width, shape["deck"], cab[0])).transformed(to_obj),
              material=int(rng.choice([0, 2])))
    if "roof_rack" in options:
        b.add("roof_rack", P.merge(_roof_rack(rng, width, shape)).transformed(to_obj), material=2)
    if "lights" in options:
        b.add("lights", P.merge(_lights(rng, length, width, shape["face_top"], bottom)).transformed(to_obj),
              material=2)
    b.params.update(style=style, options=options, wheel_radius=round(float(wheel_r), 3))
    return b


def _car_body(rng, length, width, bottom, belt, roof, cab, runs, axles, wheel_r, arch_r):
    """Extruded side profiles: a body with wheel arches, and a tapering greenhouse on top.

    Also returns the shape facts the accessories need: deck height deck(x), top of the front
    face, and the flat roof's extent and height.
    """
    corner = rng.uniform(0.05, 0.15)
    nose = belt - rng.uniform(0.0, 0.18) * (belt - bottom)  # front of the bonnet
    nose_round = rng.uniform(0.05, 0.2)
    tail = belt - rng.uniform(0.0, 0.08)
    outline = [(0, bottom + corner), (corner, bottom), *_arch(axles[0], wheel_r, arch_r, bottom),
               *_arch(axles[1], wheel_r, arch_r, bottom), (length - corner, bottom), (length, bottom + corner),
               (length, nose - nose_round), (length - nose_round, nose), (cab[1], belt), (corner, tail),
               (0, tail - corner)]
    body = P.extrude(outline, width)
    rear, front = cab
    back_run, screen_run = np.array(runs) * min(1.0, (front - rear - 0.12 * length) / sum(runs))
    bulge = rng.uniform(0.0, 0.06)
    s = np.linspace(0, 1, 7)[1:-1]
    roof_pts = [(front - screen_run - (front - screen_run - rear - back_run) * t, roof + bulge * np.sin(np.pi * t))
                for t in s]
    greenhouse = [(rear, belt - 0.02), (front, belt - 0.02), (front - screen_run, roof), *roof_pts,
                  (rear + back_run, roof)]
    cabin = P.extrude(greenhouse, width * rng.uniform(0.84, 0.94))
    taper = rng.uniform(0.8, 0.95)  # tumblehome: the roof is narrower than the waist
    v = cabin.vertices.copy()
    v[:, 2] *= 1 + (taper - 1) * np.clip((v[:, 1] - belt) / (roof - belt), 0, 1)
    roof_span = (rear + back_run, front - screen_run)
    shape = dict(deck=lambda x: tail + (belt - tail) * (x - corner) / (front - corner),
                 face_top=nose - nose_round, roof_span=roof_span, roof_len=roof_span[1] - roof_span[0],
                 roof=roof, roof_top=roof + bulge)
    return body, P.Mesh(v, cabin.faces), shape


def _toy_body(rng, length, width, bottom, belt, roof, cab):
    """Rounded-box body and cabin; wheels stand outside the body."""
    body = P.rounded_box((length, belt - bottom, width), rng.uniform(0.1, 0.3)).translated(
        (length / 2, (belt + bottom) / 2, 0))
    cab_len = cab[1] - cab[0] * rng.uniform(1.0, 4.0)
    cab_x = cab[1] - cab_len / 2
    cabin = P.rounded_box((cab_len, roof - belt + 0.02, width * rng.uniform(0.75, 0.9)), rng.uniform(0.08, 0.25))
    return body, cabin.translated((cab_x, (roof + belt - 0.02) / 2, 0)), dict(roof_len=0.0)


def _spoiler(rng, length, width, deck, deck_end) -> list[P.Mesh]:
    """Rear wing on two struts standing on the boot lid."""
    chord = rng.uniform(0.15, 0.28)
    thick = chord * rng.uniform(0.12, 0.2)
    lift = rng.uniform(0.06, 0.25)
    x = min(length * rng.uniform(0.02, 0.06) + chord / 2, deck_end - chord * 0.6)
    y = float(deck(x))
    foil = [(-chord / 2, 0), (chord / 2, thick * 0.5), (chord * 0.3, thick), (-chord * 0.3, thick * 0.8)]
    wing = P.extrude(foil, width * rng.uniform(0.75, 0.95)).translated((x, y + lift, 0))
    strut = P.box((chord * 0.3, lift + 0.04, 0.025))
    spread = width * rng.uniform(0.25, 0.35)
    return [wing] + [strut.translated((x, y + lift / 2 - 0.015, s * spread)) for s in (-1, 1)]


def _roof_rack(rng, width, shape) -> list[P.Mesh]:
    """Two rails on short feet with cross bars, above the flat part of the roof."""
    r = rng.uniform(0.012, 0.022)
    lo, hi = shape["roof_span"][0] + 0.1, shape["roof_span"][1] - 0.1
    z = width * rng.uniform(0.22, 0.3)
    h = shape["roof_top"] + rng.uniform(0.04, 0.08)
    parts = []
    for side in (-z, z):
        parts.append(rod((lo, h, side), (hi, h, side), r))
        parts += [rod((x, shape["roof"] - 0.02, side), (x, h, side), r) for x in (lo + r, hi - r)]
    bars = int(rng.integers(2, 4))
    parts += [rod((x, h + r * 1.5, -z - 0.05), (x, h + r * 1.5, z + 0.05), r * 0.9)
              for x in np.linspace(lo + 0.15, hi - 0.15, bars)]
    return parts


def _lights(rng, length, width, face_top, bottom) -> list[P.Mesh]:
    """Pair of headlamps set into the front face."""
    h = rng.uniform(0.06, 0.14)
    w = width * rng.uniform(0.14, 0.22)
    lamp = P.box((0.06, h, w)) if rng.random() < 0.6 else P.cylinder(h / 2, 0.06, 20).rotated("z", np.pi / 2)
    y = max(face_top - h / 2 - rng.uniform(0.02, 0.08), bottom + 0.1 + h / 2)
    return [lamp.translated((length, y, s * width * rng.uniform(0.3, 0.36))) for s in (-1, 1)]


# ---------------------------------------------------------------------------------------------
# Airplane: fuselage along Z (tail at z = 0, nose at z = 1), wings spanning X.
# ---------------------------------------------------------------------------------------------

PLANE_STYLES = ("airliner", "prop", "twin_prop", "fighter", "glider")


def fuselage(rng, style: str, radius: float, tail_len: float, sweep_up: float):
    """Lathed body along Z with an upswept tail cone; returns (mesh, centre_y(z), radius(z))."""
    pointed = style == "fighter"
    nose_len = rng.uniform(0.15, 0.25) if pointed else radius * rng.uniform(1.0, 2.2)
    s = np.linspace(0, 1, 9)
    tail = np.stack([radius * (0.12 + 0.88 * (1 - (1 - s) ** 2)), tail_len * s], 1)
    t = np.linspace(0, 1, 11)[1:]
    nose_r = radius * (1 - t ** 1.5) if pointed else radius * np.sqrt(1 - t ** 2)
    nose = np.stack([nose_r, 1 - nose_len + nose_len * t], 1)
    profile = np.concatenate([[(0, 0)], tail, [(radius, 1 - nose_len)], nose])
    profile[-1, 0] = 0.0
    mesh = P.lathe(profile, 32).transformed(P.rotation("x", np.pi / 2))

    def centre(z):
        return sweep_up * radius * np.clip((tail_len - np.asarray(z)) / tail_len, 0, 1) ** 2

    v = mesh.vertices.copy()
    v[:, 1] = v[:, 1] * rng.uniform(1.0, 1.12) + centre(v[:, 2])
    return P.Mesh(v, mesh.faces), centre, lambda z: np.interp(z, profile[:, 1], profile[:, 0])


def wing_half(span: float, root: float, tip: float, sweep: float, thick: float, thin: float) -> P.Mesh:
    """Right half of a tapered, swept lifting surface: root leading edge at the origin, tip at +X."""
    plan = [(0, 0), (0, -root), (span, -sweep - tip), (span, -sweep)]
    mesh = P.extrude(plan, thick).transformed(P.rotation("x", np.pi / 2))
    v = mesh.vertices.copy()
    v[:, 1] *= 1 + (thin / thick - 1) * v[:, 0] / span
    return P.Mesh(v, mesh.faces)


def pair(half: P.Mesh, dihedral: float) -> list[P.Mesh]:
    """Right half tilted up by `dihedral` and its mirror image."""
    right = half.rotated("z", dihedral)
    return [right, right.scaled((-1, 1, 1))]


def propeller(rng, spinner_r: float, blade_len: float) -> list[P.Mesh]:
    """Spinner cone and pitched blades in the XY plane, facing +Z, hub centre at the origin."""
    n = int(rng.integers(2, 5))
    spinner = P.cylinder(spinner_r, spinner_r * 2, 20, radius_top=spinner_r * 0.05)
    spinner = spinner.transformed(P.rotation("x", np.pi / 2))
    width = blade_len * rng.uniform(0.1, 0.16)
    blade = P.box((width, blade_len - spinner_r * 0.5, width * 0.25)).rotated("y", rng.uniform(0.2, 0.5))
    blade = blade.translated((0, spinner_r * 0.5 + (blade_len - spinner_r * 0.5) / 2, -spinner_r * 0.4))
    return [spinner] + [blade.rotated("z", 2 * np.pi * k / n) for k in range(n)]


def nacelle(radius: float, length: float) -> P.Mesh:
    """Engine pod along Z: narrow exhaust at z = 0, recessed intake face at the front."""
    prof = [(0, 0), (radius * 0.55, 0), (radius * 0.85, length * 0.25), (radius, length * 0.6),
            (radius * 0.95, length), (radius * 0.5, length * 0.96), (0, length * 0.94)]
    return P.lathe(prof, 24).transformed(P.rotation("x", np.pi / 2))


@category("airplane")
def airplane(rng: np.random.Generator) -> AssetBuilder:
    style = _pick(rng, PLANE_STYLES)
    b = AssetBuilder("airplane", palette(rng, "paint", "metal", "paint"))
    radius = {"airliner": (0.045, 0.065), "prop": (0.06, 0.08), "twin_prop": (0.05, 0.07),
              "fighter": (0.045, 0.06), "glider": (0.03, 0.045)}[style]
    radius = rng.uniform(*radius)
    tail_len = rng.uniform(0.2, 0.32)
    body, centre, radius_at = fuselage(rng, style, radius, tail_len, rng.uniform(0.2, 0.7))
    b.add("fuselage", body, material=0)

    w = _wing_layout(rng, style, radius)
    half = wing_half(w["span"] / 2, w["root"], w["tip"], w["sweep"], w["thick"], w["thick"] * 0.5)
    b.add("wing", [m.translated((0, w["y"], w["z"])) for m in pair(half, w["dihedral"])], material=0)

    fin = _fin(rng, style, centre, radius_at)
    b.add("fin", fin["meshes"], material=int(rng.choice([0, 2])))
    t_tail = style == "glider" or (style in ("airliner", "twin_prop") and rng.random() < 0.25)
    has_stab = style != "fighter" or rng.random() < 0.6
    if has_stab:
        span = w["span"] * rng.uniform(0.3, 0.42)
        root = min(rng.uniform(0.09, 0.14), fin["tip_chord"] * 1.1) if t_tail else rng.uniform(0.09, 0.16)
        stab = wing_half(span / 2, root, root * rng.uniform(0.4, 0.7), span / 2 * np.tan(rng.uniform(0.1, 0.6)),
                         root * 0.1, root * 0.06)
        if t_tail:
            at = (0, fin["top"] + root * 0.05, fin["tip_le"])
        else:
            z = root + rng.uniform(0.0, 0.04)
            at = (0, float(centre(z - root / 2)), z)
        b.add("stabilizer", [m.translated(at) for m in pair(stab, rng.uniform(0, 0.1))],
              material=int(rng.choice([0, 2])))

    engines, lowest = _engines(b, rng, style, w, radius)
    parts = 3 + int(has_stab) + engines
    extras = {"propeller": style == "prop",
              "landing_gear": style == "prop" or (style != "glider" and parts < 8 and rng.random() < 0.3)}
    if extras["propeller"]:
        spin = radius * rng.uniform(0.3, 0.45)
        prop_len = radius * rng.uniform(1.8, 2.6)
        b.add("propeller", [m.translated((0, 0, 1 + spin * 0.9)) for m in propeller(rng, spin, prop_len)],
              material=1)
    if extras["landing_gear"]:
        ground = min(-radius * rng.uniform(1.6, 2.4), lowest - 0.2 * radius)
        if extras["propeller"]:
            ground = min(ground, -radius * 0.9 - prop_len)
        b.add("landing_gear", _landing_gear(rng, radius, w, ground), material=1)
    b.params.update(style=style, engines=engines, t_tail=bool(t_tail), stabilizer=bool(has_stab),
                    wing_position=w["position"], **{k: bool(v) for k, v in extras.items()})
    return b


def _wing_layout(rng, style, radius) -> dict:
    """Span, chords, sweep, height and position of the main wing for a plane style."""
    if style == "fighter":
        span = rng.uniform(0.5, 0.75)
        root = rng.uniform(0.3, 0.45)
        tip = root * rng.uniform(0.05, 0.25)
        sweep = root - tip + rng.uniform(-0.05, 0.03)
    elif style == "glider":
        span = rng.uniform(1.5, 2.0)
        root = rng.uniform(0.06, 0.09)
        tip = root * rng.uniform(0.4, 0.6)
        sweep = rng.uniform(0.0, 0.03)
    elif style == "airliner":
        span = rng.uniform(0.8, 1.1)
        root = rng.uniform(0.15, 0.22)
        tip = root * rng.uniform(0.25, 0.4)
        sweep = span / 2 * np.tan(rng.uniform(0.4, 0.6))
    else:
        span = rng.uniform(1.0, 1.4)
        root = rng.uniform(0.12, 0.18)
        tip = root * rng.uniform(0.55, 1.0)
        sweep = rng.uniform(0.0, 0.04)
    position = _pick(rng, {"airliner": ["low"], "fighter": ["mid", "low"], "glider": ["high", "mid"]}
                     .get(style, ["low", "high"]))
    y = {"low": -0.55, "mid": 0.0, "high": 0.8}[position] * radius
    z = rng.uniform(0.5, 0.62) + (root * 0.5 if style == "fighter" else 0.0)
    return dict(span=span, root=root, tip=tip, sweep=sweep, thick=root * rng.uniform(0.08, 0.13),
                dihedral=rng.uniform(0.0, 0.1) if style != "fighter" else rng.uniform(-0.05, 0.02),
                position=position, y=y, z=z)


def _fin(rng, style, centre, radius_at) -> dict:
    """Vertical fin (twin canted fins on some fighters) standing on the tail cone."""
    height = rng.uniform(0.1, 0.18)
    root = rng.uniform(0.12, 0.2)
    tip = root * rng.uniform(0.4, 0.7)
    sweep = height * np.tan(rng.uniform(0.4, 0.8))
    z0 = root + rng.uniform(0.0, 0.04)  # root leading edge
    plan = [(0, 0), (-root, 0), (-sweep - tip, height), (-sweep, height)]
    fin = P.extrude(plan, root * rng.uniform(0.07, 0.1)).transformed(P.rotation("y", -np.pi / 2))
    base = float(centre(z0 - root / 2))
    twin = style == "fighter" and rng.random() < 0.4
    r_here = float(radius_at(z0 - root / 2))
    if twin:
        right = fin.rotated("z", -rng.uniform(0.15, 0.35)).translated((r_here * 0.5, base + r_here * 0.5, z0))
        meshes = [right, right.scaled((-1, 1, 1))]
    else:
        meshes = [fin.translated((0, base + r_here * 0.3, z0))]
    top = max(float(m.vertices[:, 1].max()) for m in meshes)
    return dict(meshes=meshes, top=top, tip_le=z0 - sweep, tip_chord=tip)


def _engines(b: AssetBuilder, rng, style, w, radius) -> tuple[int, float]:
    """2 or 4 identical pods (jets on pylons, or props on nacelles) under the wing.

    Returns the engine count and the lowest point reached (for the landing gear).
    """
    if style == "airliner":
        count = int(rng.choice([2, 4]))
    elif style == "twin_prop":
        count = 2
    else:
        return 0, -radius
    half = w["span"] / 2
    if style == "airliner":
        r = radius * rng.uniform(0.45, 0.65)
        length = rng.uniform(0.08, 0.13)
        gap = r * rng.uniform(0.2, 0.5)
        pylon = P.box((r * 0.25, gap + w["thick"] * 0.3, length * 0.6)).translated((0, r + gap / 2, length * 0.45))
        pod = P.merge([nacelle(r, length), pylon])
        hang = r + gap  # nacelle centre below the wing's underside
        inner = max(rng.uniform(0.22, 0.38), (radius + 1.5 * r) / half)
        stations = [inner] if count == 2 else [inner, max(rng.uniform(0.5, 0.62), inner + 3 * r / half)]
        ahead = length * rng.uniform(0.3, 0.55)
        reach = r
    else:
        r = radius * rng.uniform(0.4, 0.55)
        length = w["root"] * rng.uniform(1.1, 1.5)
        blade = r * rng.uniform(2.0, 3.0)
        spin = r * 0.7
        pod = P.merge([nacelle(r, length)] +
                      [m.translated((0, 0, length * 0.95 + spin * 0.9)) for m in propeller(rng, spin, blade)])
        hang = r * rng.uniform(-0.3, 0.3)
        stations = [max(rng.uniform(0.3, 0.4), (radius + blade * 1.1) / half)]
        ahead = length * rng.uniform(0.4, 0.6) + spin * 2
        reach = blade
    lowest = -radius
    for eta in stations:
        x = eta * half
        le = w["z"] - w["sweep"] * eta
        thick = w["thick"] * (1 - 0.5 * eta)
        y_under = w["y"] + x * np.tan(w["dihedral"]) - thick / 2
        lowest = min(lowest, y_under - hang - reach)
        for side in (-1, 1):
            b.add("engine", pod.translated((side * x, y_under - hang, le - length + ahead)), material=1)
    return count, lowest


def _landing_gear(rng, radius, w, ground) -> list[P.Mesh]:
    """Fixed tricycle gear: two splayed main legs and a nose leg, each ending in a wheel."""
    wr = radius * rng.uniform(0.25, 0.4)
    strut = radius * rng.uniform(0.06, 0.1)
    tyre = P.cylinder(wr, wr * 0.7, 20).rotated("z", np.pi / 2)
    main_z = w["z"] - w["root"] * 0.6
    nose_z = 1 - radius * rng.uniform(2.5, 4.0)
    spread = radius * rng.uniform(0.9, 1.6)
    parts = []
    for x, z, top_x in ((spread, main_z, radius * 0.4), (-spread, main_z, -radius * 0.4), (0, nose_z, 0)):
        hub = np.array([x, ground + wr, z])
        parts += [rod((top_x, -radius * 0.6, z), hub, strut), tyre.translated(hub)]
    return parts
