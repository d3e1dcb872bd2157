"""Load any mesh file as a list of posed parts (keeping node transforms, materials, textures), unit-cube normalised."""
import os
import string
import struct
from dataclasses import dataclass

import numpy as np
import trimesh

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
MAX_TEXTURE_SIDE = 1024   # larger textures only cost upload time at our image sizes


@dataclass
class Part:
    """One geometry placed in the world: a trimesh and its 4x4 pose."""
    mesh: trimesh.Trimesh
    pose: np.ndarray


def load_mesh_file(path):
    """Read a GLB/GLTF/OBJ/PLY/STL file into normalised parts; raise ValueError when it holds no usable triangles."""
    problem = file_problem(path)
    if problem:
        raise ValueError(problem)
    # process=False: keep the file as it is (no vertex merging, which is slow on big meshes and drops NaN
    # vertices silently); broken coordinates are then reported by normalise().
    scene = trimesh.load(str(path), force="scene", process=False)
    return normalise(scene_parts(scene))


def file_problem(path):
    """What is plainly wrong with a mesh file before any parser sees it (empty, not a GLB, cut short), or None."""
    size = os.path.getsize(path)
    if size == 0:
        return "empty file"
    with open(path, "rb") as f:
        head = f.read(16)
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix == ".glb":
        if head[:4] != b"glTF":
            return f"not a GLB: starts with {_show(head)}"
        version, length = struct.unpack("<II", head[4:12]) if len(head) >= 12 else (0, 0)
        if version != 2 or length != size:
            return f"broken GLB: version {version}, header says {length} bytes, file has {size}"
    elif head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        return f"not a {suffix[1:].upper()} file: starts with {_show(head)} (an HTML page?)"
    return None


def _show(head):
    """The first bytes of a file as a reader would quote them: `text` when printable, else a bytes literal."""
    text = head[:9].decode("latin-1")
    if all(c in string.printable and c not in "\r\n\t\x0b\x0c" for c in text):
        return f"`{text}`"
    return repr(head[:8])


def scene_parts(scene):
    """Every triangle geometry of a trimesh Scene with its world transform (instances included)."""
    parts = []
    for node in scene.graph.nodes_geometry:
        pose, name = scene.graph[node]
        mesh = scene.geometry.get(name)
        if isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 0:
            parts.append(Part(mesh, np.asarray(pose, dtype=np.float64)))
    return parts


def normalise(parts):
    """Scale and centre parts so their joint bounding box fits a unit cube at the origin; fix textures on the way."""
    if not parts:
        raise ValueError("no triangles")
    corners = []
    for part in parts:
        vertices = np.asarray(part.mesh.vertices)   # plain numpy: trimesh's tracked arrays cost per operation
        if not np.isfinite(vertices).all() or not np.isfinite(part.pose).all():
            raise ValueError("non-finite vertex coordinates (NaN or inf)")
        world = vertices @ np.asarray(part.pose, dtype=np.float64)[:3, :3].T + np.asarray(part.pose)[:3, 3]
        corners += [world.min(0, keepdims=True), world.max(0, keepdims=True)]
    corners = np.concatenate(corners)
    low, high = corners.min(0), corners.max(0)
    extent = float((high - low).max())
    if not extent > 1e-9:
        raise ValueError("degenerate geometry (zero size)")
    to_unit = np.diag([1.0 / extent] * 3 + [1.0])
    to_unit[:3, 3] = -(low + high) / 2 / extent
    for part in parts:
        part.pose = to_unit @ part.pose
        _fix_textures(part.mesh)
    return parts


def _fix_textures(mesh):
    """Make texture images RGB/RGBA (grey+alpha crashes pyrender) and at most MAX_TEXTURE_SIDE pixels wide."""
    material = getattr(mesh.visual, "material", None)
    if material is None:
        return
    for attr in ("baseColorTexture", "metallicRoughnessTexture", "normalTexture", "emissiveTexture",
                 "occlusionTexture", "image"):
        image = getattr(material, attr, None)
        if image is None or not hasattr(image, "mode"):
            continue
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA")
        if max(image.size) > MAX_TEXTURE_SIDE:
            image = image.copy()
            image.thumbnail((MAX_TEXTURE_SIDE, MAX_TEXTURE_SIDE))
        setattr(material, attr, image)
