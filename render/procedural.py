"""Built-in objects made from (seed, index): object-like assemblies (furniture, vessels, lamps, carts, creatures,
cut-out shapes) with plausible materials and image-like textures, plus a share of the original primitive clusters.

Every object stands on +Y and has something that shows its turn (a handle, an arm, a backrest, a label on one side),
except the plain solids that `symmetric_share` mixes in: those look the same after a turn of 60 degrees, so a model
trained on them learns that a bottle or a can turns into itself.
"""
import numpy as np
import trimesh

from render.scene import Part, normalise
from render.shapes import blob, extrude, lathe, moved, primitive, rod, star_outline
from render.textures import colour, pick_palette, texture_image

TEXTURED_SHARE = 0.45   # chance that a part allowed a texture gets one (at most two per object: each costs a draw)


def procedural_uid(seed, index):
    """The uid of built-in object `index` made with `seed` (used in sample keys)."""
    return f"proc-s{seed}-{index:06d}"


class Painter:
    """Gives the pieces of one object their materials: one palette per role, textures on at most two roles."""

    def __init__(self, rng, textures_left=2):
        self.rng, self.textures_left, self.by_role, self.painted = rng, textures_left, {}, []

    def paint(self, piece, role, families=None, texture=True, kind=None):
        """Colour `piece` in the role's material (the same role shares it), maybe textured (a texture `kind`,
        such as a printed label, makes it likely); returns the piece."""
        rng = self.rng
        if role not in self.by_role:
            palette = pick_palette(rng, families)
            share = 1.0 if kind else TEXTURED_SHARE
            use_texture = texture and self.textures_left > 0 and rng.random() < share
            self.textures_left -= use_texture
            image = texture_image(rng, palette, kind) if use_texture else None
            self.by_role[role] = (colour(rng, palette), image)
        self.painted.append((piece, role))
        return piece

    def parts(self):
        """The painted pieces as parts: all smooth plain ones as one mesh, all flat ones as another, each
        textured role as its own (one trimesh each: building a trimesh per piece cost more than rendering)."""
        groups = {}
        for piece, role in self.painted:
            rgba, image = self.by_role[role]
            key = ("texture", role) if image is not None else ("smooth" if piece.smooth else "flat",)
            groups.setdefault(key, []).append((piece, rgba))
        parts = []
        for key, members in groups.items():
            if key[0] == "texture":
                mesh = _textured(members, self.by_role[key[1]][1])
            else:
                mesh = _joined(members, smooth=key[0] == "smooth")
            parts.append(Part(mesh, np.eye(4)))
        return parts


def _joined(members, smooth):
    """One trimesh of plain-coloured pieces: colours per vertex (smooth shading) or per face (flat)."""
    offsets = np.cumsum([0] + [len(p.vertices) for p, _ in members])
    vertices = np.concatenate([p.vertices for p, _ in members])
    faces = np.concatenate([p.faces + o for (p, _), o in zip(members, offsets)])
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    counts = [len(p.vertices) if smooth else len(p.faces) for p, _ in members]
    colours = np.repeat(np.array([rgba for _, rgba in members], dtype=np.uint8), counts, axis=0)
    if smooth:
        mesh.visual.vertex_colors = colours
    else:
        mesh.visual.face_colors = colours
    return mesh


def _textured(members, image):
    """One trimesh of pieces sharing a texture: by their own uv (lathe, blob), else by projecting each face on
    its main axis (boxes, extrusions, rods: flat faces, each with its own vertices)."""
    vertices, faces, uvs, offset = [], [], [], 0
    for piece, _ in members:
        v, f, uv = piece.vertices, piece.faces, piece.uv
        if uv is None:
            axis = np.abs(piece.face_normals()).argmax(1).repeat(3)
            v, f = v[f].reshape(-1, 3), np.arange(3 * len(f)).reshape(-1, 3)
            keep = np.array([[2, 1], [0, 2], [0, 1]])[axis]
            uv = np.take_along_axis(v, keep, axis=1)
            uv = (uv - uv.min(0)) / max(float(np.ptp(uv, axis=0).max()), 1e-9)
        vertices.append(v)
        faces.append(f + offset)
        uvs.append(uv)
        offset += len(v)
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image, baseColorFactor=[255, 255, 255, 255],
                                                   metallicFactor=0.0, roughnessFactor=0.8)
    mesh.visual = trimesh.visual.TextureVisuals(uv=np.concatenate(uvs), material=material)
    return mesh


# ---- object families: each builds a list of meshes in world coordinates (Y up, standing on y = 0) -------------

def table(rng, paint):
    """A top (slab or disc) on 3-4 legs or a pedestal, sometimes a drawer or a lamp-like item on one side."""
    w, d, h = rng.uniform(0.8, 1.4), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)
    t = rng.uniform(0.03, 0.08)
    round_top = rng.random() < 0.35
    top = primitive("cylinder", (w, t, w)) if round_top else primitive("box", (w, t, d))
    parts = [paint.paint(moved(top, (0, h, 0)), "top", ["wood", "stone", "plastic", "paint"])]
    leg_r = rng.uniform(0.02, 0.05)
    if round_top and rng.random() < 0.5:
        parts.append(paint.paint(rod((0, 0.02, 0), (0, h, 0), leg_r * 1.6), "legs", ["metal", "wood"], False))
        parts.append(paint.paint(moved(primitive("cylinder", (w * 0.5, 0.04, w * 0.5)), (0, 0.02, 0)), "legs"))
    else:
        corners = [(x, z) for x in (-1, 1) for z in (-1, 1)] if not round_top else \
            [(np.sin(a), np.cos(a)) for a in np.linspace(0, 2 * np.pi, 4)[:3] + rng.uniform(0, 1)]
        sx, sz = (w / 2 - 0.06, d / 2 - 0.06) if not round_top else (w / 2 - 0.08, w / 2 - 0.08)
        splay = rng.uniform(0, 0.08)
        for x, z in corners:
            parts.append(paint.paint(rod((x * (sx + splay), 0, z * (sz + splay)), (x * sx, h, z * sz), leg_r,
                                         square=rng.random() < 0.5), "legs", ["wood", "metal", "paint"], False))
    if not round_top and rng.random() < 0.6:   # a drawer under one side: the turn shows
        drawer = primitive("box", (w * 0.4, h * 0.18, d * 0.9))
        side = rng.choice([-1, 1])
        parts.append(paint.paint(moved(drawer, (side * w * 0.25, h - h * 0.1, 0)), "drawer", ["wood", "paint"]))
        parts.append(paint.paint(moved(primitive("sphere", (0.05, 0.05, 0.05)), (side * w * 0.25, h - h * 0.1,
                                                                              d * 0.46)), "knob", ["metal"], False))
    else:
        parts += _small_item(rng, paint, (rng.uniform(-0.3, 0.3) * w, h + t / 2, rng.uniform(-0.2, 0.2) * d))
    return parts


def _small_item(rng, paint, base):
    """Something standing on a surface at `base`: a cup, a box or a blob."""
    s = rng.uniform(0.12, 0.25)
    if rng.random() < 0.5:
        item = moved(primitive("box", (s, s * rng.uniform(0.5, 1.5), s * rng.uniform(0.5, 1.0))),
                     (base[0], base[1] + s * 0.4, base[2]), yaw=rng.uniform(0, 3))
    else:
        item = moved(blob(rng, s / 2, 0.2), (base[0], base[1] + s / 2, base[2]))
    return [paint.paint(item, "item", ["plastic", "ceramic", "paint"])]


def chair(rng, paint):
    """A seat on four legs with a backrest (solid or slats) on one side, sometimes arms."""
    w, d, h = rng.uniform(0.45, 0.65), rng.uniform(0.45, 0.6), rng.uniform(0.4, 0.55)
    t = rng.uniform(0.04, 0.08)
    parts = [paint.paint(moved(primitive("box", (w, t, d)), (0, h, 0)), "seat", ["wood", "fabric", "plastic"])]
    r = rng.uniform(0.02, 0.035)
    for x in (-1, 1):
        for z in (-1, 1):
            parts.append(paint.paint(rod((x * (w / 2 - r), 0, z * (d / 2 - r)), (x * (w / 2 - r), h, z * (d / 2 - r)),
                                         r, square=rng.random() < 0.6), "legs", ["wood", "metal"], False))
    back_h = rng.uniform(0.35, 0.6)
    if rng.random() < 0.5:
        back = primitive("box", (w, back_h, t * 0.7))
        parts.append(paint.paint(moved(back, (0, h + back_h / 2, -d / 2 + t / 3), pitch=-rng.uniform(0, 0.2)),
                                 "back", ["wood", "fabric", "plastic"]))
    else:
        for x in np.linspace(-w / 2 + r, w / 2 - r, rng.integers(3, 6)):
            parts.append(paint.paint(rod((x, h, -d / 2 + r), (x, h + back_h, -d / 2 + r), r * 0.8), "legs"))
        parts.append(paint.paint(moved(primitive("box", (w, 0.06, 0.04)), (0, h + back_h, -d / 2 + r)), "legs"))
    if rng.random() < 0.3:
        for x in (-1, 1):
            parts.append(paint.paint(moved(primitive("box", (0.05, 0.04, d * 0.8)), (x * w / 2, h + 0.22, 0)), "legs"))
            parts.append(paint.paint(rod((x * w / 2, h, d * 0.3), (x * w / 2, h + 0.22, d * 0.3), r * 0.7), "legs"))
    return parts


def shelf(rng, paint):
    """Two side panels, 2-5 thin shelves, a back panel, and a few things on the shelves (not centred)."""
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.45), rng.uniform(0.8, 1.6)
    t = rng.uniform(0.02, 0.05)
    parts = []
    for x in (-1, 1):
        parts.append(paint.paint(moved(primitive("box", (t, h, d)), (x * (w / 2 - t / 2), h / 2, 0)), "frame",
                                 ["wood", "paint", "metal"]))
    levels = np.linspace(0.02, h - t / 2, rng.integers(3, 6))
    for y in levels:
        parts.append(paint.paint(moved(primitive("box", (w, t, d)), (0, y, 0)), "frame"))
    if rng.random() < 0.7:
        parts.append(paint.paint(moved(primitive("box", (w, h, t / 2)), (0, h / 2, -d / 2)), "back",
                                 ["wood", "paint", "fabric"]))
    for y in levels[:-1][rng.random(len(levels) - 1) < 0.6]:
        parts += _small_item(rng, paint, (rng.uniform(-0.35, 0.35) * w, y + t / 2, rng.uniform(-0.1, 0.1) * d))
    return parts


def cart(rng, paint):
    """A body on four wheels, with a cabin or a handle towards one end: a toy car, a trolley, a wagon."""
    length, width, body_h = rng.uniform(0.8, 1.4), rng.uniform(0.4, 0.7), rng.uniform(0.15, 0.35)
    wheel_r = rng.uniform(0.1, 0.2)
    y0 = wheel_r * rng.uniform(0.9, 1.3)
    parts = [paint.paint(moved(primitive("box", (width, body_h, length)), (0, y0 + body_h / 2, 0)), "body",
                         ["paint", "plastic", "wood", "metal"])]
    torus_wheels = rng.random() < 0.4
    for x in (-1, 1):
        for z in (-0.35, 0.35):
            if torus_wheels:   # trimesh's torus turns about Z: a quarter turn about Y makes it roll along Z
                wheel = primitive("torus", (wheel_r * 2,) * 3)
                wheel.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
            else:              # our cylinder stands on Y: a quarter turn about Z
                wheel = primitive("cylinder", (wheel_r * 2, 0.08, wheel_r * 2))
                wheel.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1]))
            moved(wheel, (x * (width / 2 + 0.03), wheel_r, z * length))
            parts.append(paint.paint(wheel, "wheels", ["fabric", "metal", "plastic"], False))
    end = rng.choice([-1, 1])
    if rng.random() < 0.6:   # a cabin towards one end
        cab_l = length * rng.uniform(0.3, 0.5)
        cab = primitive("box", (width * 0.9, body_h * rng.uniform(0.8, 1.6), cab_l))
        parts.append(paint.paint(moved(cab, (0, y0 + body_h + cab.extents[1] / 2, end * (length - cab_l) / 2 * 0.8)),
                                 "cabin", ["paint", "plastic", "ceramic"]))
    else:                    # a push handle at one end
        top = y0 + body_h + rng.uniform(0.3, 0.6)
        for x in (-1, 1):
            parts.append(paint.paint(rod((x * width * 0.4, y0 + body_h, end * length / 2),
                                         (x * width * 0.4, top, end * (length / 2 + 0.1)), 0.02), "handle",
                                     ["metal", "plastic"], False))
        parts.append(paint.paint(rod((-width * 0.45, top, end * (length / 2 + 0.1)),
                                     (width * 0.45, top, end * (length / 2 + 0.1)), 0.025), "handle"))
    return parts


def vessel(rng, paint):
    """A lathed cup, mug, vase, bottle or bowl (open ones with a wall thickness); a handle or a one-sided label."""
    kind = rng.choice(["mug", "vase", "bottle", "bowl"])
    h = rng.uniform(0.5, 1.2) if kind != "bowl" else rng.uniform(0.25, 0.5)
    n = 9
    y = np.linspace(0, h, n)
    if kind == "bottle":
        body = rng.uniform(0.2, 0.35)
        neck = body * rng.uniform(0.25, 0.45)
        shoulder = rng.uniform(0.55, 0.75)
        r = np.where(y < shoulder * h, body, neck + (body - neck) * np.clip((h * 0.85 - y) / (h * (0.85 - shoulder)),
                                                                            0, 1) ** 1.5)
        r[0] *= 0.92
        mesh = lathe(np.concatenate([[0.0], r, [0.0]]), np.concatenate([[0.0], y, [h]]))
        parts = [paint.paint(mesh, "body", ["ceramic", "plastic", "paint"], kind="label")]
        cap = primitive("cylinder", (neck * 2.3, 0.08, neck * 2.3))
        parts.append(paint.paint(moved(cap, (0, h + 0.03, 0)), "cap", ["plastic", "metal"], False))
        return parts
    base, top = rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.45)
    bulge = rng.uniform(-0.1, 0.15) if kind == "vase" else rng.uniform(-0.02, 0.04)
    outer = base + (top - base) * y / h + bulge * np.sin(np.pi * y / h) * (3 if kind == "vase" else 1)
    if kind == "bowl":
        outer = base + (top * 1.6 - base) * np.sqrt(y / h)
    wall = rng.uniform(0.02, 0.04)
    inner = np.maximum(outer[::-1] - wall, 0.02)
    radii = np.concatenate([[0.0], outer, inner, [0.0]])
    heights = np.concatenate([[0.0], y, np.maximum(y[::-1], wall), [wall]])
    mesh = lathe(radii, heights, cap=False)   # the profile runs out, up, over the rim and down inside: hollow
    parts = [paint.paint(mesh, "body", ["ceramic", "plastic", "paint", "stone", "metal"])]
    if kind == "mug" or (kind != "bowl" and rng.random() < 0.3):
        yaw = rng.uniform(0, 2 * np.pi)
        size = h * rng.uniform(0.35, 0.55)
        handle = primitive("torus", (size, size, size * rng.uniform(0.8, 1.4)))
        handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))   # ring in YZ
        moved(handle, (np.sin(yaw) * (top + size * 0.3), h * 0.55, np.cos(yaw) * (top + size * 0.3)), yaw=yaw)
        parts.append(paint.paint(handle, "body"))
    else:   # something on one side, out from the rim: a spout, or a tab to hold a bowl by
        yaw = rng.uniform(0, 2 * np.pi)
        out = np.array([np.sin(yaw), 0.0, np.cos(yaw)])
        rim = float(outer[-1])
        if kind == "bowl":
            tab = moved(primitive("box", (0.18, 0.03, 0.12)), out * (rim + 0.03) + [0, h - 0.02, 0], yaw=yaw)
            parts.append(paint.paint(tab, "body"))
        else:
            start, tip = out * rim * 0.8 + [0, h * 0.6, 0], out * (rim + rng.uniform(0.1, 0.2)) + [0, h * 0.9, 0]
            parts.append(paint.paint(rod(start, tip, rng.uniform(0.03, 0.05)), "body"))
    return parts


def lamp(rng, paint):
    """A base, a pole or jointed arm reaching out to one side, and a hollow shade."""
    base_r = rng.uniform(0.15, 0.3)
    parts = [paint.paint(lathe([0, base_r, base_r * 0.8, 0], [0, 0, 0.06, 0.06]), "base",
                         ["metal", "stone", "ceramic", "wood"], False)]
    points = [np.array([0.0, 0.05, 0.0])]
    for _ in range(rng.integers(1, 4)):
        step = np.array([rng.uniform(-0.35, 0.35), rng.uniform(0.25, 0.6), rng.uniform(-0.2, 0.2)])
        points.append(points[-1] + step)
    r = rng.uniform(0.015, 0.03)
    for a, b in zip(points[:-1], points[1:]):
        parts.append(paint.paint(rod(a, b, r), "arm", ["metal", "paint"], False))
        parts.append(paint.paint(moved(primitive("sphere", (3 * r, 3 * r, 3 * r)), b), "arm"))
    shade_h = rng.uniform(0.2, 0.4)
    top_r, bottom_r = rng.uniform(0.06, 0.15), rng.uniform(0.15, 0.3)
    shade = lathe([bottom_r, top_r, top_r - 0.01, bottom_r - 0.01], [0, shade_h, shade_h, 0.0], cap=False)
    tilt = rng.uniform(0, 0.9)
    shade.apply_transform(trimesh.transformations.rotation_matrix(tilt, [0, 0, 1]))
    moved(shade, points[-1] + [0, -shade_h * 0.6, 0], yaw=rng.uniform(0, 2 * np.pi))
    parts.append(paint.paint(shade, "shade", ["fabric", "paint", "ceramic", "metal"]))
    return parts


def creature(rng, paint):
    """An organic body (a noisy blob) with a head to one side, legs, maybe ears or a tail: a toy animal, a fruit."""
    if rng.random() < 0.35:   # a fruit or a stone: one lump with a stem and a leaf
        lump = blob(rng, 0.5, rng.uniform(0.1, 0.4), stretch=(1.0, rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.1)))
        parts = [paint.paint(moved(lump, (0, 0.5, 0)), "body", ["plastic", "stone", "paint", "wood"])]
        top = float(lump.vertices[:, 1].max())
        parts.append(paint.paint(rod((0, top - 0.05, 0), (0.05, top + 0.12, 0.02), 0.025), "stem", ["wood"], False))
        leaf = moved(blob(rng, 0.12, 0.1, stretch=(1.0, 0.15, 0.5)), (0.15, top + 0.08, 0.05), yaw=rng.uniform(0, 3))
        parts.append(paint.paint(leaf, "leaf", ["paint"], False))
        return parts
    body_l, body_h = rng.uniform(0.5, 0.9), rng.uniform(0.3, 0.5)
    leg_h = rng.uniform(0.1, 0.35)
    body = blob(rng, 0.5, 0.12, stretch=(body_h * 1.1, body_h, body_l))
    parts = [paint.paint(moved(body, (0, leg_h + body_h / 2, 0)), "body", ["fabric", "paint", "plastic", "wood"])]
    head_r = rng.uniform(0.15, 0.25)
    head_c = np.array([0.0, leg_h + body_h * rng.uniform(0.7, 1.2), body_l / 2 + head_r * 0.6])
    parts.append(paint.paint(moved(blob(rng, head_r, 0.1), head_c), "body"))
    eye_r = head_r * 0.18
    for x in (-1, 1):
        eye = primitive("sphere", (2 * eye_r,) * 3)
        parts.append(paint.paint(moved(eye, head_c + [x * head_r * 0.45, head_r * 0.25, head_r * 0.8]), "eyes",
                                 ["metal"], False))
        if rng.random() < 0.6:
            ear = primitive("cone", (head_r * 0.6, head_r * 0.8, head_r * 0.4))
            parts.append(paint.paint(moved(ear, head_c + [x * head_r * 0.5, head_r * 0.9, 0]), "body"))
    for x in (-1, 1):
        for z in (-1, 1):
            foot = np.array([x * body_h * 0.35, 0.0, z * body_l * 0.3])
            parts.append(paint.paint(rod(foot, foot + [0, leg_h + body_h * 0.3, 0], rng.uniform(0.04, 0.07)), "legs",
                                     ["fabric", "paint", "wood"], False))
    if rng.random() < 0.7:
        base = np.array([0.0, leg_h + body_h * 0.6, -body_l / 2])
        parts.append(paint.paint(rod(base, base + [rng.uniform(-0.1, 0.1), rng.uniform(0.05, 0.3), -0.25], 0.03),
                                 "body"))
    return parts


def cutout(rng, paint):
    """An extruded profile (gear, star, frame, rounded tile) with or without a hole, standing on a foot or a post."""
    angle, outer = star_outline(rng)
    hole = outer * rng.uniform(0.35, 0.7) if rng.random() < 0.6 else None
    depth = rng.uniform(0.05, 0.25)
    plate = extrude(angle, outer, depth, hole)
    size = rng.uniform(0.8, 1.2)
    plate.apply_scale(size)
    lift = 0.5 * size + rng.uniform(0.02, 0.3)
    moved(plate, (0, lift, 0), yaw=rng.uniform(0, 0.5))
    parts = [paint.paint(plate, "plate", ["metal", "wood", "plastic", "paint", "stone"])]
    if rng.random() < 0.5:   # a stand: a post to a foot, off to one side
        x = rng.uniform(-0.25, 0.25) * size
        parts.append(paint.paint(rod((x, 0, 0), (x, lift - 0.4 * size, 0), 0.03), "stand", ["metal", "wood"], False))
        parts.append(paint.paint(moved(primitive("box", (0.4 * size, 0.04, 0.3)), (x, 0.02, 0)), "stand"))
    else:                    # leaning back on a block behind it
        plate.apply_transform(trimesh.transformations.rotation_matrix(-rng.uniform(0.2, 0.6), [1, 0, 0],
                                                                      [0, lift - 0.5 * size, 0]))
        block = primitive("box", (rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.3), 0.2))
        parts.append(paint.paint(moved(block, (rng.uniform(-0.2, 0.2), block.extents[1] / 2, -0.25)), "stand",
                                 ["wood", "stone", "plastic"]))
    return parts


def cluster(rng, paint):
    """The original generator: a box, cylinder or capsule body with 2-5 primitive attachments at distinct azimuths."""
    size = rng.uniform(0.5, 1.2, 3)
    body_kind = ("box", "cylinder", "capsule")[rng.integers(3)]
    body = primitive(body_kind, size if body_kind == "box" else (size[0], size[1], size[0]))
    parts = [paint.paint(body, "body")]
    half = body.extents / 2
    # Attachments at distinct azimuths (no two within 50 degrees) so that no turn maps the object onto itself.
    azimuths = rng.permutation(np.arange(0, 360, 50))[: rng.integers(2, 6)] + rng.uniform(0, 20)
    for i, azimuth in enumerate(np.radians(azimuths)):
        direction = np.array([np.sin(azimuth), 0.0, np.cos(azimuth)])
        kind = ("box", "cone", "sphere", "cylinder", "torus")[rng.integers(5)]
        scale = rng.uniform(0.5, 1.0) * half.max()
        stretch = {"box": rng.uniform(0.4, 1.0, 3), "cone": [1.0, rng.uniform(0.8, 1.6), 1.0],
                   "sphere": [1.0, 1.0, 1.0], "cylinder": [0.5, 1.5, 0.5], "torus": [1.0, 1.0, 1.0]}[kind]
        attachment = primitive(kind, np.asarray(stretch) * scale)
        pose = trimesh.transformations.random_rotation_matrix(rng.random(3))
        pose[:3, 3] = direction * (np.abs(direction * half).max() + attachment.extents.max() * 0.25)
        pose[1, 3] = rng.uniform(-0.8, 0.9) * half[1]
        attachment.apply_transform(pose)
        parts.append(paint.paint(attachment, f"part{i}", texture=False))
    return parts


def _profile(rng, kind):
    """(radii, heights) of a closed profile from the axis at the bottom, out, up and back to the axis at the top."""
    h = rng.uniform(0.4, 1.4)
    y = np.linspace(0, h, 16)
    if kind == "bottle":
        body, shoulder = rng.uniform(0.2, 0.35), rng.uniform(0.5, 0.75)
        neck = body * rng.uniform(0.25, 0.45)
        r = neck + (body - neck) * np.clip((h * 0.85 - y) / (h * (0.85 - shoulder)), 0, 1) ** 1.5
    elif kind == "can":
        r = np.full_like(y, rng.uniform(0.15, 0.45))
        r[[0, -1]] *= rng.uniform(0.85, 1.0)   # a rolled rim
    elif kind == "jar":   # a body and a wider or narrower lid
        body = rng.uniform(0.2, 0.45)
        r = np.where(y < h * rng.uniform(0.7, 0.85), body, body * rng.uniform(0.8, 1.1))
    elif kind == "ball":
        angle = np.linspace(0, np.pi, 18)[1:-1]   # the poles are the profile's own ends
        r, y = np.sin(angle) * 0.5, (1 - np.cos(angle)) * 0.5 * rng.uniform(0.6, 1.4)
    elif kind == "cone":
        r = rng.uniform(0.2, 0.5) * (1 - y / h) + rng.uniform(0.0, 0.1) * y / h
    elif kind == "top":   # a spinning top: widest partway up, a stem on top
        widest = rng.uniform(0.3, 0.7)
        r = rng.uniform(0.25, 0.5) * np.clip(np.minimum(y / (h * widest), (h * 0.85 - y) / (h * (0.85 - widest))),
                                               0, 1) ** 0.7
        r = np.maximum(r, np.where(y > h * 0.5, 0.04, 0.02))
    elif kind == "stack":   # discs of two to four widths
        widths = rng.uniform(0.1, 0.45, rng.integers(2, 5))
        r = widths[np.arange(16) * len(widths) // 16]
    else:   # "vase": a smooth random bulge
        r = rng.uniform(0.12, 0.3) + rng.uniform(0.02, 0.12) * np.sin(np.pi * y / h * rng.uniform(1, 3)
                                                                     + rng.uniform(0, np.pi))
    return np.concatenate([[0.0], r, [0.0]]), np.concatenate([[y[0]], y, [y[-1]]])


def symmetric(rng, paint):
    """A plain solid turned about +Y (a bottle, can, jar, ball, cone, spinning top, vase or stack of discs), in one
    to three bands of colour, smooth or with 6, 12 or 18 flat sides: it looks the same after a 60 degree turn."""
    radii, heights = _profile(rng, rng.choice(["bottle", "can", "jar", "ball", "cone", "top", "vase", "stack"]))
    sections = 36 if rng.random() < 0.7 else int(rng.choice([6, 12, 18]))   # multiples of 6: a 60 degree turn maps
    cuts = np.sort(rng.choice(np.arange(3, len(radii) - 3), rng.integers(0, 3), replace=False))   # it onto itself
    bounds = [0, *cuts, len(radii) - 1]
    for k, (start, stop) in enumerate(zip(bounds, bounds[1:])):   # the bands share their boundary rows: no gaps
        band = lathe(radii[start:stop + 1], heights[start:stop + 1], sections=sections, cap=False)
        band.smooth = sections == 36
        paint.paint(band, f"band{k if rng.random() < 0.7 else 0}", texture=False)
    return paint.painted


FAMILIES = {"table": (table, 1.0), "chair": (chair, 1.0), "shelf": (shelf, 0.6), "cart": (cart, 1.0),
            "vessel": (vessel, 1.4), "lamp": (lamp, 0.8), "creature": (creature, 1.2), "cutout": (cutout, 0.8),
            "cluster": (cluster, 1.2)}   # weights: about one object in eight is an original primitive cluster


def family_of(seed, index, symmetric_share=0.0):
    """Which family object `index` of `seed` belongs to ("symmetric" for a share of them, drawn from a generator of
    its own so the others stay what they are without the share; else drawn first from the object's generator)."""
    if symmetric_share and np.random.default_rng([seed, index, 1]).random() < symmetric_share:
        return "symmetric"
    return _draw_family(np.random.default_rng([seed, index]))


def _draw_family(rng):
    names = list(FAMILIES)
    weights = np.array([FAMILIES[n][1] for n in names])
    return names[rng.choice(len(names), p=weights / weights.sum())]


def make_object(seed, index, symmetric_share=0.0):
    """Build object `index` of `seed` as normalised parts (deterministic: the same arguments always give the same)."""
    rng = np.random.default_rng([seed, index])
    if family_of(seed, index, symmetric_share) == "symmetric":
        build = symmetric
    else:   # drawn from `rng` itself, so its state (and so the object) is what it was before the share existed
        build = FAMILIES[_draw_family(rng)][0]
    painter = Painter(rng)
    build(rng, painter)
    return normalise(painter.parts())
