"""Procedural objects: every family builds, fits the unit cube, mixes textures and plain colours, and turns visibly;
the symmetric share adds plain solids that look the same after the turn and leaves the other objects as they were."""
from collections import Counter

import numpy as np
import pytest
import trimesh

from render.camera import View
from render.procedural import FAMILIES, family_of, make_object

COUNT = 120


def _world(parts):
    return np.concatenate([trimesh.transform_points(p.mesh.vertices, p.pose) for p in parts])


def test_all_families_appear_and_keep_a_share_of_primitive_clusters():
    families = Counter(family_of(0, i) for i in range(400))
    assert set(families) == set(FAMILIES)
    assert 0.06 < families["cluster"] / 400 < 0.25   # the original generator stays in the mix


def test_objects_are_normalised_and_mix_textures_with_plain_colours():
    kinds = Counter()
    for i in range(COUNT):
        parts = make_object(3, i)
        world = _world(parts)
        assert np.ptp(world, 0).max() == pytest.approx(1.0) and np.allclose(world.min(0) + world.max(0), 0)
        textured = sum(p.mesh.visual.kind == "texture" for p in parts)
        assert textured <= 2   # each texture is a separate draw: the renderer's rate depends on it
        kinds["textured" if textured else "plain"] += 1
    assert kinds["textured"] > COUNT * 0.3 and kinds["plain"] > COUNT * 0.2


def test_every_object_shows_its_turn():
    """No object looks the same from all sides: a handle, an arm, a backrest or a one-sided label shows the turn."""
    from render.renderer import Renderer
    renderer = Renderer(32)
    same = []
    for i in range(80):
        views = renderer.render_views(make_object(1, i), [View(a, 15.0) for a in (10.0, 130.0, 250.0)])
        changed = max(int((np.abs(a.astype(int) - b.astype(int)).max(-1) > 40).sum())
                      for a, b in zip(views, views[1:] + views[:1]))
        if changed < 3:   # pixels of 1024 that change clearly
            same.append((i, family_of(1, i), changed))
    renderer.close()
    assert not same, same


def test_symmetric_share_adds_plain_solids_and_leaves_the_rest_as_they_were():
    families = [family_of(3, i, 0.3) for i in range(200)]
    assert 0.2 < families.count("symmetric") / 200 < 0.4
    assert all(f == family_of(3, i) for i, f in enumerate(families) if f != "symmetric")
    others = [i for i, f in enumerate(families) if f != "symmetric"][:10]
    for i in others:   # the same objects as without the share, so older data and the demo's objects stay valid
        a, b = make_object(3, i, 0.3), make_object(3, i)
        assert all(np.array_equal(p.mesh.vertices, q.mesh.vertices) for p, q in zip(a, b))
    assert all(family_of(3, i, 1.0) == "symmetric" for i in range(20))


def test_symmetric_objects_look_the_same_after_the_turn():
    from render.renderer import Renderer
    renderer = Renderer(32)
    for i in range(16):
        parts = make_object(2, i, 1.0)
        world = _world(parts)
        assert np.ptp(world, 0).max() == pytest.approx(1.0) and np.allclose(world.min(0) + world.max(0), 0)
        a, b = renderer.render_views(parts, [View(25.0, 20.0), View(85.0, 20.0)])
        assert (a[..., 3] > 0).mean() > 0.02   # something to see
        assert int((np.abs(a.astype(int) - b.astype(int)).max(-1) > 40).sum()) < 3, i
    renderer.close()
