"""Materials: a texel and a painted colour of the same value render alike, whatever path the texture came by."""
import numpy as np
import pytest
import trimesh
from PIL import Image

from render.camera import View
from render.scene import Part, load_mesh_file, normalise

VIEWS = [View(30.0, 20.0), View(200.0, -5.0)]


def _box(value, how):
    """A unit box of grey `value`: painted on its faces, or an image texture (a trimesh SimpleMaterial or PBR)."""
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    box.unmerge_vertices()   # flat faces for both, so only the colour path differs
    if how == "paint":
        box.visual.face_colors = [value, value, value, 255]
        return box
    image = Image.fromarray(np.full((8, 8, 3), value, np.uint8))
    uv = np.random.default_rng(0).random((len(box.vertices), 2))
    material = (trimesh.visual.material.PBRMaterial(baseColorTexture=image) if how == "pbr"
                else trimesh.visual.material.SimpleMaterial(image=image))   # trimesh's default Kd is 0.4 grey
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return box


def _mean_level(renderer, parts):
    images = renderer.render_views(parts, VIEWS)
    return np.mean([image[..., :3][image[..., 3] > 0].mean() for image in images])


@pytest.fixture(scope="module")
def renderer():
    from render.renderer import Renderer
    r = Renderer(48)
    yield r
    r.close()


@pytest.mark.parametrize("value", [255, 128])
def test_texel_and_paint_of_the_same_colour_render_alike(renderer, tmp_path, value):
    paint = _mean_level(renderer, normalise([Part(_box(value, "paint"), np.eye(4))]))
    simple = _mean_level(renderer, normalise([Part(_box(value, "simple"), np.eye(4))]))
    _box(value, "pbr").export(tmp_path / "pbr.glb")   # a GLB with no metallicFactor: pyrender read it as metal
    pbr = _mean_level(renderer, load_mesh_file(tmp_path / "pbr.glb"))
    assert abs(simple - paint) < 4 and abs(pbr - paint) < 4, (paint, simple, pbr)
    if value == 128:
        assert abs(paint - 128) < 40   # a mid grey stays mid grey when lit, not washed out towards white


def test_obj_with_an_mtl_colour_and_no_texture_keeps_its_colour(renderer, tmp_path):
    """An MTL with Kd and no map_Kd loads as a texture material without an image: Kd must still colour it."""
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    (tmp_path / "red.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    lines = ["mtllib red.mtl", "usemtl red"] + [f"v {x} {y} {z}" for x, y, z in box.vertices] + \
            ["vt 0 0"] + [f"f {a + 1}/1 {b + 1}/1 {c + 1}/1" for a, b, c in box.faces]
    (tmp_path / "red.obj").write_text("\n".join(lines) + "\n")
    parts = load_mesh_file(tmp_path / "red.obj")
    image = renderer.render_views(parts, VIEWS[:1])[0]
    r, g, b = image[..., :3][image[..., 3] > 0].mean(0)
    assert r > 150 and g < 80 and b < 80, (r, g, b)
