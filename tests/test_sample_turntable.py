"""Turntable angles and generation order for fixed-angle and relative-camera models; ancestral sampling in sample()."""
import numpy as np
import torch
from PIL import Image

from conftest import make_weights
from train.sample import sample
from train.turntable import describe_turn, describe_turntable, turn_angles, turntable_views


def test_turn_angles():
    assert turn_angles(3, 0, 45.0) == [0.0, 45.0, 90.0]           # fixed-turn model: its data's one turn, again
    assert turn_angles(4, 4, 45.0) == [0.0, 90.0, 180.0, 270.0]


def test_turntable_says_what_it_does_past_a_full_turn():
    assert describe_turn(60.0) == "the object turned 60 degrees clockwise seen from above"
    assert describe_turn(-30.0) == "the object turned 30 degrees counter-clockwise seen from above"
    assert describe_turntable(6, 0, 60.0).endswith("(0 to 300 degrees)")
    assert describe_turntable(7, 0, 60.0).endswith("past a full turn from view 6 on, so views repeat angles")


def test_fixed_angle_model_feeds_views_back_and_camera_model_asks_each_angle():
    calls = []

    def generate(cond, camera):
        calls.append((cond.clone(), camera))
        return cond + 1

    start = torch.zeros(2, 3, 4, 4)
    views = turntable_views(generate, start, 3, 0, 60.0)
    assert [v[0, 0, 0, 0].item() for v in views] == [0, 1, 2]           # each view is the previous one turned
    assert calls[1][0][0, 0, 0, 0].item() == 1 and calls[1][1] is None

    calls.clear()
    views = turntable_views(generate, start, 3, 4, 60.0)
    assert [v[0, 0, 0, 0].item() for v in views] == [0, 1, 1]            # every view straight from the input
    assert all(c[0].abs().sum() == 0 for c in calls)
    sin_cos = [c[1][0, :2].tolist() for c in calls]                       # [sin, cos] of 120 and 240 degrees
    assert np.allclose(sin_cos, [[np.sin(np.radians(120)), np.cos(np.radians(120))],
                                 [np.sin(np.radians(240)), np.cos(np.radians(240))]], atol=1e-6)


def test_camera_model_turntable_with_ancestral_sampler(tmp_path):
    weights = make_weights(tmp_path / "w", camera_dim=4)
    img = tmp_path / "cup.png"
    Image.fromarray(np.full((30, 50, 3), 200, np.uint8)).save(img)
    written = sample(weights, [img], tmp_path / "out", steps=3, sampler="ancestral", seed=3, turntable=4)
    assert sorted(p.name for p in written) == sorted(["cup_turntable.gif", "cup_turntable.png"] + [
        f"cup_view{k:02d}{d}.png" for k in range(4) for d in ("", "_256px")])
    again = sample(weights, [img], tmp_path / "again", steps=3, sampler="ancestral", seed=3, turntable=4)
    for a, b in zip(written, again):                                      # seeded: identical files
        assert np.array_equal(np.asarray(Image.open(a).convert("RGB")), np.asarray(Image.open(b).convert("RGB")))
