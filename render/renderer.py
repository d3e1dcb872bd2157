"""Offscreen pyrender renderer, one per process and reused across objects: posed parts + views -> RGBA images."""
import numpy as np
import trimesh

from render.backend import import_pyrender
from render.camera import FOV_DEG

UNCOLOURED = [180, 180, 180, 255]   # parts without any colour: light grey, not pyrender's dark default
ROUGHNESS = 0.8       # of plain-coloured parts, and of textured ones whose file gives none
MAX_METALLIC = 0.5    # pyrender has no environment light: a full metal shows only the ambient term, near black


class Renderer:
    """Renders normalised parts from orbit views with a camera-attached light, so every side is lit."""

    def __init__(self, size, backend="auto"):
        self.pyrender = import_pyrender(backend)
        self.size = size
        self.offscreen = self.pyrender.OffscreenRenderer(size, size)
        self.scene, self.camera, self.headlight = self._empty_scene()
        self.mesh_nodes = []

    def _empty_scene(self):
        """The scene every object is shown in: camera and lights, made once (a pyrender node costs ~0.2 ms)."""
        pr = self.pyrender
        scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.45, 0.45, 0.45])
        camera = scene.add(pr.PerspectiveCamera(yfov=np.radians(FOV_DEG), aspectRatio=1.0, znear=0.05, zfar=20.0))
        # A headlight that follows the camera means the visible side is always lit, whatever the view;
        # a fixed light from above keeps some shape cues.
        headlight = scene.add(pr.DirectionalLight(color=np.ones(3), intensity=2.5))
        top = np.eye(4)
        top[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]   # light's -Z points down (-Y)
        scene.add(pr.DirectionalLight(color=np.ones(3), intensity=1.5), pose=top)
        return scene, camera, headlight

    def build_scene(self, parts):
        """Put posed parts in the scene in place of the previous object's; returns (scene, camera, headlight).

        The scene is shared: building the next object replaces this one (pyrender then frees its GL buffers).
        """
        for node in self.mesh_nodes:
            self.scene.remove_node(node)
        self.mesh_nodes = []
        coloured = [p for p in parts if p.mesh.visual.kind != "texture"]
        if coloured:
            # pyrender's cost is mostly Python per primitive per frame: draw all plain-coloured parts as one.
            self.mesh_nodes.append(self.scene.add(self._merged_colour_mesh(coloured)))
        for part in parts:
            if part.mesh.visual.kind == "texture":
                self.mesh_nodes.append(self.scene.add(self._textured_mesh(part.mesh), pose=part.pose))
        return self.scene, self.camera, self.headlight

    def _textured_mesh(self, mesh):
        """One pyrender primitive for a textured trimesh, built directly (from_trimesh deep-copies and recomputes)."""
        faces = np.asarray(mesh.faces)
        vertices = np.asarray(mesh.vertices)
        normals = _smooth_normals(vertices, faces)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        uv = mesh.visual.uv
        primitive = self.pyrender.Primitive(
            positions=vertices, normals=normals, indices=faces, material=self._texture_material(mesh.visual.material),
            texcoord_0=None if uv is None or len(uv) != len(vertices) else np.asarray(uv))
        return self.pyrender.Mesh([primitive])

    def _texture_material(self, material):
        """A pyrender material for a trimesh texture material that lights a white texel like a white vertex colour.

        pyrender reads a missing metallicFactor as 1.0 (glTF's default) and, with no environment to reflect, a
        metal renders at the ambient level only: a white texel came out at 140 where white paint gives 243. Files
        that leave it out (trimesh's exports, OBJ/MTL, most scans) mean no metal, so None counts as 0 here, and
        explicit metals are capped at MAX_METALLIC. A SimpleMaterial (OBJ/MTL, or made in code) uses its image
        alone as the base colour (trimesh fills a missing Kd with 0.4 grey, which would multiply every texel);
        without an image, its Kd is the colour.
        """
        pr = self.pyrender
        if isinstance(material, trimesh.visual.material.PBRMaterial):
            metallic = min(float(material.metallicFactor or 0.0), MAX_METALLIC)
            roughness = ROUGHNESS if material.roughnessFactor is None else float(material.roughnessFactor)
            factor = (np.ones(4) if material.baseColorFactor is None
                      else np.asarray(material.baseColorFactor, dtype=np.float64) / 255.0)
            image = material.baseColorTexture
            return pr.MetallicRoughnessMaterial(
                baseColorFactor=factor, baseColorTexture=image, metallicFactor=metallic, roughnessFactor=roughness,
                metallicRoughnessTexture=material.metallicRoughnessTexture, normalTexture=material.normalTexture,
                occlusionTexture=material.occlusionTexture, emissiveTexture=material.emissiveTexture,
                emissiveFactor=material.emissiveFactor, doubleSided=bool(material.doubleSided),
                alphaMode=_alpha_mode(material.alphaMode, factor, image), alphaCutoff=material.alphaCutoff)
        image = getattr(material, "image", None)
        diffuse = getattr(material, "diffuse", None)
        if image is None and diffuse is not None:   # an MTL colour without a map: Kd is the colour, as sRGB
            factor = np.asarray(diffuse, dtype=np.float64) / 255.0
            factor[:3] = _srgb_to_linear(factor[:3])
        else:
            factor = np.ones(4)
        return pr.MetallicRoughnessMaterial(baseColorFactor=factor, baseColorTexture=image, metallicFactor=0.0,
                                            roughnessFactor=ROUGHNESS, alphaMode=_alpha_mode(None, factor, image))

    def _merged_colour_mesh(self, parts):
        """One pyrender mesh in world coordinates for all parts without textures.

        Vertex-coloured parts stay indexed with smooth normals; face-coloured (or uncoloured) parts get three
        vertices per triangle so each face keeps its own colour and flat normal.
        """
        positions, normals, colours, indices, offset = [], [], [], [], 0
        for part in parts:
            mesh = part.mesh
            world = _transform(np.asarray(mesh.vertices), part.pose)
            faces = np.asarray(mesh.faces)
            if mesh.visual.kind == "vertex":
                normals.append(_smooth_normals(world, faces))
                colours.append(np.asarray(mesh.visual.vertex_colors))
            else:
                world, faces = world[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3)
                corners = world.reshape(-1, 3, 3)
                flat = _cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
                normals.append(np.repeat(flat, 3, axis=0))
                face_colours = (np.asarray(mesh.visual.face_colors) if mesh.visual.kind == "face"
                                else np.tile(UNCOLOURED, (len(corners), 1)))
                colours.append(np.repeat(face_colours, 3, axis=0))
            positions.append(world)
            indices.append(faces + offset)
            offset += len(world)
        normals = np.concatenate(normals)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        colours = np.concatenate(colours).astype(np.float32) / 255.0
        # pyrender multiplies the lit colour by COLOR_0 as if it were linear, then applies gamma; colours are
        # written in sRGB (as texels are, which the shader linearises), so linearise them here: paint and
        # texture of the same colour then render alike, and mid-tones are not washed out.
        colours[:, :3] = _srgb_to_linear(colours[:, :3])
        material = self.pyrender.MetallicRoughnessMaterial(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=ROUGHNESS,
            alphaMode="OPAQUE" if (colours[:, 3] >= 1.0).all() else "BLEND")
        primitive = self.pyrender.Primitive(positions=np.concatenate(positions), normals=normals, color_0=colours,
                                            indices=np.concatenate(indices), material=material)
        return self.pyrender.Mesh([primitive])

    def render_views(self, parts, views):
        """RGBA uint8 images (size x size x 4) of the parts seen from each view; alpha is coverage."""
        return self.render_scene(self.build_scene(parts), views)

    def render_scene(self, built, views):
        """Render a scene from `build_scene` from each view."""
        scene, camera, headlight = built
        images = []
        for view in views:
            pose = view.cam2world()
            scene.set_pose(camera, pose)
            scene.set_pose(headlight, pose)
            colour, depth = self.offscreen.render(scene, flags=self.pyrender.RenderFlags.NONE)
            # OSMesa ignores the RGBA flag, so alpha comes from depth: identical masks, full speed.
            alpha = (depth > 0).astype(np.uint8) * 255
            rgba = np.concatenate([colour[..., :3] * (alpha[..., None] > 0), alpha[..., None]], axis=2)
            images.append(rgba.astype(np.uint8))
        return images

    def close(self):
        """Release the OpenGL context."""
        self.offscreen.delete()


def _srgb_to_linear(c):
    """sRGB-encoded values in 0..1 -> linear light (the piecewise sRGB curve, as pyrender's shader uses)."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _alpha_mode(mode, factor, image):
    """The file's alpha mode, else BLEND only where the colour factor or texture has transparency."""
    if mode in ("OPAQUE", "MASK", "BLEND"):
        return mode
    translucent = (factor is not None and factor[3] < 1.0) or (
        image is not None and getattr(image, "mode", "") in ("RGBA", "LA") and image.getextrema()[-1][0] < 255)
    return "BLEND" if translucent else "OPAQUE"


def _transform(points, pose):
    """(n, 3) points moved by a 4x4 pose; plain numpy (trimesh's tracked arrays cost per operation)."""
    pose = np.asarray(pose, dtype=np.float64)
    return points @ pose[:3, :3].T + pose[:3, 3]


def _cross(a, b):
    """Row-wise cross product of (n, 3) arrays: np.cross's generality costs more than the arithmetic here."""
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


def _smooth_normals(vertices, faces):
    """Area-weighted vertex normals (unnormalised), several times faster than trimesh's for big meshes."""
    face_normals = _cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    corners = faces.reshape(-1)
    return np.stack([np.bincount(corners, weights=np.repeat(face_normals[:, k], 3), minlength=len(vertices))
                     for k in range(3)], axis=1)
