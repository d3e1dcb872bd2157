"""Offscreen pyrender renderer, one per process and reused across objects: posed parts + views -> RGBA images."""
import numpy as np
import trimesh

from render.backend import import_pyrender
from render.camera import FOV_DEG

UNCOLOURED = [180, 180, 180, 255]   # parts without any colour: light grey, not pyrender's dark default


class Renderer:
    """Renders normalised parts from orbit views with a camera-attached light, so every side is lit."""

    def __init__(self, size, backend="auto"):
        self.pyrender = import_pyrender(backend)
        self.size = size
        self.offscreen = self.pyrender.OffscreenRenderer(size, size)

    def build_scene(self, parts):
        """Make a pyrender scene (meshes, camera, lights) from posed parts; returns (scene, camera_node, light_node)."""
        pr = self.pyrender
        scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.45, 0.45, 0.45])
        coloured = [p for p in parts if p.mesh.visual.kind != "texture"]
        if coloured:
            # pyrender's cost is mostly Python per primitive per frame: draw all plain-coloured parts as one.
            scene.add(self._merged_colour_mesh(coloured))
        for part in parts:
            if part.mesh.visual.kind == "texture":
                scene.add(pr.Mesh.from_trimesh(part.mesh), pose=part.pose)
        camera = scene.add(pr.PerspectiveCamera(yfov=np.radians(FOV_DEG), aspectRatio=1.0, znear=0.05, zfar=20.0))
        # A headlight that follows the camera means the visible side is always lit, whatever the view;
        # a fixed light from above keeps some shape cues.
        headlight = scene.add(pr.DirectionalLight(color=np.ones(3), intensity=2.5))
        top = np.eye(4)
        top[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]   # light's -Z points down (-Y)
        scene.add(pr.DirectionalLight(color=np.ones(3), intensity=1.5), pose=top)
        return scene, camera, headlight

    def _merged_colour_mesh(self, parts):
        """One pyrender mesh in world coordinates for all parts without textures.

        Vertex-coloured parts stay indexed with smooth normals; face-coloured (or uncoloured) parts get three
        vertices per triangle so each face keeps its own colour and flat normal.
        """
        positions, normals, colours, indices, offset = [], [], [], [], 0
        for part in parts:
            mesh = part.mesh
            world = trimesh.transform_points(mesh.vertices, part.pose)
            faces = np.asarray(mesh.faces)
            if mesh.visual.kind == "vertex":
                normals.append(_smooth_normals(world, faces))
                colours.append(mesh.visual.vertex_colors)
            else:
                world, faces = world[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3)
                corners = world.reshape(-1, 3, 3)
                flat = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
                normals.append(np.repeat(flat, 3, axis=0))
                face_colours = (mesh.visual.face_colors if mesh.visual.kind == "face"
                                else np.tile(UNCOLOURED, (len(corners), 1)))
                colours.append(np.repeat(face_colours, 3, axis=0))
            positions.append(world)
            indices.append(faces + offset)
            offset += len(world)
        normals = np.concatenate(normals)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        colours = np.concatenate(colours).astype(np.float32) / 255.0
        material = self.pyrender.MetallicRoughnessMaterial(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=0.8,
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


def _smooth_normals(vertices, faces):
    """Area-weighted vertex normals (unnormalised), several times faster than trimesh's for big meshes."""
    face_normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    corners = faces.reshape(-1)
    return np.stack([np.bincount(corners, weights=np.repeat(face_normals[:, k], 3), minlength=len(vertices))
                     for k in range(3)], axis=1)
