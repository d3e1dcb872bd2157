"""Camera conventions: orbit poses, deterministic view pairs, and the direction of the turn proven by rendering."""
import numpy as np
import pytest
import trimesh

from render.camera import orbit_pose, sample_pairs, View
from render.scene import Part, normalise


def test_pose_position_and_axes_follow_the_convention():
    pose = orbit_pose(90.0, 30.0, 2.0)
    e = np.radians(30.0)
    assert np.allclose(pose[:3, 3], [2 * np.cos(e), 2 * np.sin(e), 0.0])
    assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3))
    assert np.allclose(-pose[:3, 2], -pose[:3, 3] / 2.0)     # camera -Z looks at the origin
    assert pose[1, 1] > 0                                     # camera up has a world-up component
    front = orbit_pose(0.0, 0.0, 2.5)
    assert np.allclose(front[:3, :3], np.eye(3)) and np.allclose(front[:3, 3], [0, 0, 2.5])


def test_pairs_are_deterministic_and_turned_by_delta():
    a = sample_pairs(7, "obj", 5, 60.0, (-10.0, 40.0))
    assert a == sample_pairs(7, "obj", 5, 60.0, (-10.0, 40.0))
    assert a != sample_pairs(8, "obj", 5, 60.0, (-10.0, 40.0))
    for src, tgt in a:
        assert (tgt.azimuth_deg - src.azimuth_deg) % 360 == pytest.approx(60.0)
        assert tgt.elevation_deg == src.elevation_deg and -10 <= src.elevation_deg <= 40


def _marked_object():
    """A grey block with a red knob on its front (+Z), a blue one on its right (+X), grey ones opposite (centred)."""
    body = trimesh.creation.box((1.0, 1.0, 1.0))
    body.visual.face_colors = [128, 128, 128, 255]
    red = trimesh.creation.box((0.3, 0.3, 0.3))
    red.visual.face_colors = [255, 0, 0, 255]
    blue = trimesh.creation.box((0.3, 0.3, 0.3))
    blue.visual.face_colors = [0, 0, 255, 255]
    place = lambda x, z: trimesh.transformations.translation_matrix([x, 0.0, z])
    grey = [Part(body.copy(), place(-0.6, 0.0) @ np.diag([0.3, 0.3, 0.3, 1.0])),
            Part(body.copy(), place(0.0, -0.6) @ np.diag([0.3, 0.3, 0.3, 1.0]))]
    return normalise([Part(body, np.eye(4)), Part(red, place(0, 0.6)), Part(blue, place(0.6, 0)), *grey])


def _centroid_x(image, channel):
    rgb = image[..., :3].astype(int)
    mask = (rgb[..., channel] > 120) & (rgb.sum(-1) - rgb[..., channel] < 120) & (image[..., 3] > 0)
    assert mask.sum() > 5, "marker not visible"
    return np.nonzero(mask)[1].mean() / image.shape[1]


def test_positive_delta_turns_the_object_clockwise_seen_from_above(renderer):
    """Camera moves from +Z towards +X: the front knob slides left and the right-hand knob comes to the centre."""
    src, tgt = renderer.render_views(_marked_object(), [View(0.0, 0.0), View(60.0, 0.0)])
    assert abs(_centroid_x(src, 0) - 0.5) < 0.05           # front knob faces the camera at azimuth 0
    assert _centroid_x(src, 2) > 0.6                         # +X knob on the right
    assert _centroid_x(tgt, 0) < _centroid_x(src, 0) - 0.1   # front moved to the left: clockwise from above
    assert _centroid_x(tgt, 2) < _centroid_x(src, 2) - 0.1   # right knob moved towards the centre


@pytest.fixture(scope="module")
def renderer():
    from render.renderer import Renderer
    r = Renderer(64)
    yield r
    r.close()
