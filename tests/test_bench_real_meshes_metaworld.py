"""bench/real_meshes_metaworld.py on a small object of its own in Meta-World's layout (no download): the scene include
dropped, classes and includes resolved by MuJoCo, collision geoms dropped, material colours, Z up turned to Y up."""
import numpy as np
import pytest
import trimesh

from render.scene import load_mesh_file
from conftest import load_bench

pytest.importorskip("mujoco", reason="needs the dev extra (mujoco compiles the XML)")

TOP = """<mujoco model="lamp">
    <include file="assets/lamp_dependencies.xml"/>
    <include file="../scene/basic_scene.xml"/>
    <worldbody><include file="assets/lamp.xml"/></worldbody>
</mujoco>"""
DEPENDENCIES = """<mujocoinclude>
    <asset><material name="red" rgba="0.9 0.1 0.1 1"/><material name="col" rgba="0.3 0.3 1 0.5"/></asset>
    <default><default class="lamp_base"><geom group="1" contype="0" conaffinity="0"/>
        <default class="lamp_col"><geom group="4" material="col"/></default></default></default>
</mujocoinclude>"""
BODY = """<mujocoinclude><body childclass="lamp_base" name="lamp" pos="0 0 0.1">
    <geom type="box" size="0.2 0.1 0.02" rgba="0.2 0.2 0.9 1"/>
    <geom type="cylinder" euler="0 0 0" pos="0 0 0.3" size="0.02 0.3" material="red"/>
    <geom class="lamp_col" type="box" size="1 1 1"/>
</body></mujocoinclude>"""


def test_conversion_keeps_visual_geoms_in_material_colours_y_up(tmp_path):
    bench = load_bench("real_meshes_metaworld")
    (tmp_path / "assets").mkdir()
    (tmp_path / "lamp.xml").write_text(TOP)   # its scene include names a file that does not exist: it must be dropped
    (tmp_path / "assets" / "lamp_dependencies.xml").write_text(DEPENDENCIES)
    (tmp_path / "assets" / "lamp.xml").write_text(BODY)
    bench.convert(tmp_path / "lamp.xml").export(tmp_path / "lamp.glb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assets", "lamp.glb", "lamp.xml"]   # no temporary file left
    parts = load_mesh_file(tmp_path / "lamp.glb")
    assert len(parts) == 2   # the group-4 collision box of class lamp_col is dropped
    world = [trimesh.transform_points(p.mesh.vertices, p.pose) for p in parts]
    pole = max(world, key=lambda w: np.ptp(w[:, 1]))
    base = min(world, key=lambda w: np.ptp(w[:, 1]))
    assert np.ptp(pole[:, 1]) > 10 * np.ptp(pole[:, 0])   # the pole along MuJoCo's Z stands on +Y
    assert base[:, 1].min() < pole[:, 1].min() < base[:, 1].max()   # geom pos composed with body pos: it stands on the base
    colours = {tuple(int(c) for c in p.mesh.visual.face_colors[0][:3]) for p in parts}
    assert colours == {(229, 25, 25), (51, 51, 229)}
