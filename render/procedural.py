"""Built-in objects made from (seed, index): several coloured parts, some textured, never symmetric about +Y."""
import colorsys
import functools

import numpy as np
import trimesh
from PIL import Image

from render.scene import Part, normalise

TEXTURED_FRACTION = 0.4   # share of objects with an image-textured body
ROUND = {"sphere", "capsule", "torus", "cylinder"}   # shaded smooth; the others flat


def procedural_uid(seed, index):
    """The uid of built-in object `index` made with `seed` (used in sample keys)."""
    return f"proc-s{seed}-{index:06d}"


@functools.lru_cache(maxsize=None)
def _template(kind):
    """Unit-sized vertices and faces of a shape, built once per process (trimesh's builders are slow)."""
    mesh = {"box": lambda: trimesh.creation.box((1.0, 1.0, 1.0)),
            "cylinder": lambda: trimesh.creation.cylinder(radius=0.5, height=1.0, sections=24),
            "capsule": lambda: trimesh.creation.capsule(height=1.0, radius=0.35, count=[16, 16]),
            "cone": lambda: trimesh.creation.cone(radius=0.5, height=1.0, sections=20),
            "sphere": lambda: trimesh.creation.icosphere(subdivisions=2, radius=0.5),
            "torus": lambda: trimesh.creation.torus(major_radius=0.5, minor_radius=0.14, major_sections=24,
                                                    minor_sections=10)}[kind]()
    return mesh.vertices.copy(), mesh.faces.copy()


def _shape(kind, scale):
    """A new mesh of `kind` stretched by `scale` (x, y, z)."""
    vertices, faces = _template(kind)
    mesh = trimesh.Trimesh(vertices * np.asarray(scale, dtype=np.float64), faces, process=False)
    mesh.metadata["kind"] = kind
    return mesh


def make_object(seed, index):
    """Build object `index` of `seed` as normalised parts: a body plus 2-5 attachments at scattered azimuths."""
    rng = np.random.default_rng([seed, index])
    hues = (rng.random() + np.arange(6) * 0.17 + rng.uniform(-0.04, 0.04, 6)) % 1.0
    size = rng.uniform(0.5, 1.2, 3)
    body_kind = ("box", "cylinder", "capsule")[rng.integers(3)]
    body = _shape(body_kind, size if body_kind == "box" else (size[0], size[0], size[1]))
    parts = [Part(body, np.eye(4))]
    half = body.extents / 2
    # Attachments at distinct azimuths (no two within 50 degrees) so that no turn maps the object onto itself.
    azimuths = rng.permutation(np.arange(0, 360, 50))[: rng.integers(2, 6)] + rng.uniform(0, 20)
    for azimuth in np.radians(azimuths):
        direction = np.array([np.sin(azimuth), 0.0, np.cos(azimuth)])
        height = rng.uniform(-0.8, 0.9) * half[1]
        attachment = _attachment(rng, scale=rng.uniform(0.5, 1.0) * half.max())
        offset = direction * (np.abs(direction * half).max() + attachment.extents.max() * 0.25)
        pose = trimesh.transformations.random_rotation_matrix(rng.random(3))
        pose[:3, 3] = offset + [0.0, height, 0.0]
        parts.append(Part(attachment, pose))
    textured = rng.random() < TEXTURED_FRACTION
    for i, part in enumerate(parts):
        if textured and i == 0:
            _texture(part, rng, hues[i])
        else:
            _colour(part, hues[i], rng)
    return normalise(parts)


def _attachment(rng, scale):
    """A small part: box, cone, sphere, rod or torus, about `scale` across."""
    kind = ("box", "cone", "sphere", "cylinder", "torus")[rng.integers(5)]
    stretch = {"box": rng.uniform(0.4, 1.0, 3), "cone": [1.0, 1.0, rng.uniform(0.8, 1.6)],
               "sphere": [1.0, 1.0, 1.0], "cylinder": [0.5, 0.5, 1.5], "torus": [1.0, 1.0, 1.0]}[kind]
    return _shape(kind, np.asarray(stretch) * scale)


def _rgb(hue, rng):
    """A saturated, reasonably bright colour as 0..255 ints."""
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 0.95), rng.uniform(0.55, 0.95))
    return [int(255 * r), int(255 * g), int(255 * b), 255]


def _colour(part, hue, rng):
    """Paint a part one colour: on its vertices (smooth shading) for round shapes, on its faces (flat) otherwise."""
    colour = _rgb(hue, rng)
    if part.mesh.metadata["kind"] in ROUND:
        part.mesh.visual.vertex_colors = colour
    else:
        part.mesh.visual.face_colors = colour


def _texture(part, rng, hue):
    """Give a part an image texture (stripes or checks with dots), mapped by projecting each face on its axis."""
    side = 64
    y, x = np.mgrid[:side, :side]
    period = rng.integers(6, 16)
    pattern = ((x // period + y // period) % 2 == 0) if rng.random() < 0.5 else ((x + y) // period % 2 == 0)
    base, other = np.array(_rgb(hue, rng)[:3]), np.array(_rgb((hue + 0.5) % 1.0, rng)[:3])
    pixels = np.where(pattern[..., None], base, other).astype(np.uint8)
    for cx, cy in rng.integers(0, side, (4, 2)):
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < 16] = 255
    mesh = part.mesh
    mesh.unmerge_vertices()
    face_of_vertex = np.empty(len(mesh.vertices), dtype=np.int64)
    face_of_vertex[mesh.faces.reshape(-1)] = np.repeat(np.arange(len(mesh.faces)), 3)
    axis = np.abs(mesh.face_normals[face_of_vertex]).argmax(1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    uv = np.take_along_axis(mesh.vertices, keep, axis=1)
    uv = (uv - uv.min(0)) / max(float(np.ptp(uv, axis=0).max()), 1e-9)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(pixels))
