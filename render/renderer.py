"""Offscreen pyrender renderer, one per process and reused across objects: posed parts + views -> RGBA images."""
import numpy as np

from render.backend import import_pyrender
from render.camera import FOV_DEG


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
        for part in parts:
            # Face colours need flat shading; everything else keeps the file's own normals.
            smooth = part.mesh.visual.kind != "face"
            scene.add(pr.Mesh.from_trimesh(part.mesh, smooth=smooth), pose=part.pose)
        camera = scene.add(pr.PerspectiveCamera(yfov=np.radians(FOV_DEG), aspectRatio=1.0, znear=0.05, zfar=20.0))
        # A headlight that follows the camera means the visible side is always lit, whatever the view;
        # a fixed light from above keeps some shape cues.
        headlight = scene.add(pr.DirectionalLight(color=np.ones(3), intensity=2.5))
        top = np.eye(4)
        top[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]   # light's -Z points down (-Y)
        scene.add(pr.DirectionalLight(color=np.ones(3), intensity=1.5), pose=top)
        return scene, camera, headlight

    def render_views(self, parts, views):
        """RGBA uint8 images (size x size x 4) of the parts seen from each view; alpha is coverage."""
        scene, camera, headlight = self.build_scene(parts)
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
