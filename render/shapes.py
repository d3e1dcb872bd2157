"""Mesh builders for the procedural objects: primitives, lathed (revolved) and extruded profiles, noisy blobs, rods.

Builders return a Piece: bare numpy vertices and faces (a trimesh per part cost more than the rendering itself),
whether to shade it smooth, and where a texture can follow the surface, its uv.
"""
import functools
from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass
class Piece:
    """One part under construction: vertices (n, 3), faces (m, 3), smooth shading or flat, optional uv (n, 2)."""
    vertices: np.ndarray
    faces: np.ndarray
    smooth: bool
    uv: np.ndarray | None = None

    def apply_transform(self, pose):
        """Move the piece by a 4x4 rigid pose (or a scale-free rotation and shift), in place."""
        pose = np.asarray(pose, dtype=np.float64)
        self.vertices = self.vertices @ pose[:3, :3].T + pose[:3, 3]
        return self

    def apply_scale(self, factor):
        """Scale about the origin, in place."""
        self.vertices = self.vertices * factor
        return self

    @property
    def extents(self):
        """Size of the bounding box along x, y, z."""
        return np.ptp(self.vertices, axis=0)

    def face_normals(self):
        """Unit normals of the faces."""
        v = self.vertices[self.faces]
        a, b = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
        n = np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                      a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=None)
def _template(kind):
    """Unit-sized vertices and faces of a primitive standing on +Y, built once per process (builders are slow)."""
    if kind == "cylinder":   # lathed, so the caps have their own vertices and smooth shading keeps the rims sharp
        piece = lathe([0.5, 0.5], [-0.5, 0.5], sections=24)
        return piece.vertices, piece.faces
    if kind == "cone":
        piece = lathe([0.5, 0.0], [-0.5, 0.5], sections=20)
        return piece.vertices, piece.faces
    mesh = {"box": lambda: trimesh.creation.box((1.0, 1.0, 1.0)),
            "capsule": lambda: trimesh.creation.capsule(height=1.0, radius=0.35, count=[16, 16]),
            "sphere": lambda: trimesh.creation.icosphere(subdivisions=2, radius=0.5),
            "torus": lambda: trimesh.creation.torus(major_radius=0.5, minor_radius=0.14, major_sections=24,
                                                    minor_sections=10),
            "icosphere3": lambda: trimesh.creation.icosphere(subdivisions=3, radius=1.0)}[kind]()
    if kind == "capsule":   # trimesh builds it along Z
        mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    return mesh.vertices.copy(), np.asarray(mesh.faces).copy()


def primitive(kind, scale):
    """A new piece of primitive `kind` stretched by `scale` (x, y, z); round kinds are shaded smooth."""
    vertices, faces = _template(kind)
    return Piece(vertices * np.asarray(scale, dtype=np.float64), faces, kind != "box")


def lathe(radii, heights, sections=28, cap=True):
    """Revolve the profile (radius, height) pairs about +Y into a surface; u runs round, v up the profile.

    The seam column is duplicated so a texture wraps without smearing; `cap` closes the bottom and top with a
    fan when their radius is not zero (an open top makes a cup, an open profile a thin wall).
    """
    radii, heights = np.asarray(radii, dtype=np.float64), np.asarray(heights, dtype=np.float64)
    n, m = len(radii), sections + 1
    angle = np.linspace(0.0, 2 * np.pi, m)
    x = radii[:, None] * np.sin(angle)[None]
    z = radii[:, None] * np.cos(angle)[None]
    y = np.repeat(heights[:, None], m, axis=1)
    vertices = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(radii), np.diff(heights)))])
    uv = np.stack(np.meshgrid(angle / (2 * np.pi), length / max(length[-1], 1e-9)), axis=-1).reshape(-1, 2)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(m - 1), indexing="ij")
    a, b, c, d = i * m + j, i * m + j + 1, (i + 1) * m + j, (i + 1) * m + j + 1
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    if cap:
        extra_v, extra_f, extra_uv = [], [], []
        for row, flip in ((0, True), (n - 1, False)):
            if radii[row] > 1e-6:   # own vertices, so the rim keeps a sharp edge under smooth shading
                start = len(vertices) + sum(len(v) for v in extra_v)
                ring_v = vertices[row * m: row * m + m - 1]
                extra_v.append(np.concatenate([[[0.0, heights[row], 0.0]], ring_v]))
                extra_uv.append(np.concatenate([[[0.5, 0.5]], 0.5 + 0.5 * ring_v[:, [0, 2]] / radii[row]]))
                ring = start + 1 + np.arange(m - 1)
                fan = np.stack([np.full(m - 1, start), np.roll(ring, -1), ring], -1)
                extra_f.append(fan[:, ::-1] if flip else fan)
        if extra_v:
            vertices = np.concatenate([vertices] + extra_v)
            uv = np.concatenate([uv] + extra_uv)
            faces = np.concatenate([faces] + extra_f)
    return Piece(vertices, faces, True, uv)


def star_outline(rng, points=None):
    """A closed star-shaped outline as radius per angle: polygon, rounded square, gear, star or blob, ~0.5 across."""
    kind = rng.choice(["polygon", "rounded", "gear", "star", "blob"])
    angle = np.linspace(0, 2 * np.pi, points or 48, endpoint=False)
    if kind == "polygon":
        k = rng.integers(3, 9)
        radius = np.cos(np.pi / k) / np.cos((angle + rng.uniform(0, 1)) % (2 * np.pi / k) - np.pi / k)
    elif kind == "rounded":
        p = rng.uniform(3, 8)
        radius = (np.abs(np.cos(angle)) ** p + np.abs(np.sin(angle)) ** p) ** (-1 / p)
    elif kind == "gear":
        teeth = rng.integers(6, 13)
        radius = 1.0 - 0.18 * (np.sin(teeth * angle) > 0)
    elif kind == "star":
        tips = rng.integers(4, 8)
        radius = 0.55 + 0.45 * np.abs(np.cos(tips * angle / 2)) ** 2
    else:
        radius = 1.0 + sum(rng.uniform(-0.15, 0.15) * np.cos(f * angle + rng.uniform(0, 6)) for f in (2, 3, 5))
    return angle, 0.5 * radius / radius.max()


def extrude(angle, outer, depth, inner=None):
    """Extrude a star-shaped outline (radius per angle, in the XY plane) along Z by `depth`; `inner` cuts a hole.

    Faces are flat shaded; u, v are the outline's x, y so a texture reads like print on the front.
    """
    k = len(angle)
    ring = lambda r: np.stack([r * np.cos(angle), r * np.sin(angle)], axis=-1)
    loops = [ring(outer)] + ([ring(inner)] if inner is not None else [])
    vertices, faces = [], []
    for z in (-depth / 2, depth / 2):
        for loop in loops:
            vertices.append(np.column_stack([loop, np.full(k, z)]))
    vertices = np.concatenate(vertices)
    idx = np.arange(k)
    nxt = (idx + 1) % k
    per_side = k * len(loops)
    for s, flip in ((0, True), (per_side, False)):   # back and front faces
        if inner is None:
            centre = len(vertices)
            vertices = np.concatenate([vertices, [[0.0, 0.0, -depth / 2 if s == 0 else depth / 2]]])
            tri = np.stack([np.full(k, centre), s + idx, s + nxt], -1)
        else:
            o, i = s + idx, s + k + idx
            tri = np.concatenate([np.stack([o, s + nxt, s + k + nxt], -1), np.stack([o, s + k + nxt, i], -1)])
        faces.append(tri[:, ::-1] if flip else tri)
    for loop_index, outward in ((0, True), (1, False))[: len(loops)]:   # walls, outer then hole
        b, t = loop_index * k + idx, per_side + loop_index * k + idx
        bn, tn = loop_index * k + nxt, per_side + loop_index * k + nxt
        wall = np.concatenate([np.stack([b, bn, tn], -1), np.stack([b, tn, t], -1)])
        faces.append(wall if outward else wall[:, ::-1])
    return Piece(vertices, np.concatenate(faces), False)


def blob(rng, radius=0.5, roughness=0.25, stretch=(1.0, 1.0, 1.0)):
    """A smooth organic lump: an icosphere pushed in and out by a few random low-frequency waves."""
    vertices, faces = _template("icosphere3")
    v = vertices.copy()
    bump = np.zeros(len(v))
    for frequency in (1.5, 2.5, 4.0):
        direction = rng.normal(size=(3, 3))
        phase = rng.uniform(0, 2 * np.pi, 3)
        bump += (np.sin(frequency * v @ direction.T + phase).sum(1) / 3) * roughness / frequency
    v = v * (1.0 + bump)[:, None] * radius * np.asarray(stretch)
    theta = np.arctan2(vertices[:, 0], vertices[:, 2]) / (2 * np.pi) + 0.5
    return Piece(v, faces, True, np.column_stack([theta, vertices[:, 1] * 0.5 + 0.5]))


def rod(start, end, radius, square=False):
    """A cylinder (or square beam) from point `start` to point `end`: legs, poles, arms, rails."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    axis = end - start
    length = float(np.linalg.norm(axis))
    mesh = primitive("box" if square else "cylinder", (2 * radius, length, 2 * radius))
    pose = np.eye(4)
    pose[:3, :3] = _rotation_from_y(axis / max(length, 1e-12))
    pose[:3, 3] = (start + end) / 2
    mesh.apply_transform(pose)
    return mesh


def _rotation_from_y(direction):
    """The rotation that takes +Y onto the unit vector `direction`."""
    dx, c, dz = (float(a) for a in direction)
    v = np.array([dz, 0.0, -dx])   # +Y x direction, written out: np.cross costs more than this whole function
    if dx * dx + dz * dz < 1e-18:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def moved(mesh, offset=(0.0, 0.0, 0.0), yaw=0.0, pitch=0.0):
    """The mesh turned by `pitch` about X then `yaw` about Y (radians), then shifted by `offset`, in place."""
    pose = trimesh.transformations.euler_matrix(pitch, yaw, 0.0, "rxyz")
    pose[:3, 3] = offset
    mesh.apply_transform(pose)
    return mesh
