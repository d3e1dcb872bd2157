"""bench/real_meshes.py's MuJoCo-to-GLB conversion on a small XML of its own (no download): poses, Y up, groups."""
import zipfile

import numpy as np
import trimesh

from render.scene import load_mesh_file
from conftest import load_bench

XML = """<mujoco model="lamp">
  <asset><material name="red" rgba="0.9 0.1 0.1 1"/></asset>
  <worldbody><body><body name="object" pos="0 0 0.1">
    <geom type="box" size="0.2 0.1 0.02" rgba="0.2 0.2 0.9 1" group="1"/>
    <geom type="cylinder" fromto="0 0 0 0 0 0.6" size="0.02" material="red" group="1"/>
    <geom type="box" size="1 1 1" group="0"/>
  </body></body></worldbody>
</mujoco>"""


def test_conversion_keeps_visual_geoms_turns_z_up_to_y_up_and_extracts_only_objects(tmp_path):
    bench = load_bench("real_meshes")
    (tmp_path / "lamp.xml").write_text(XML)
    bench.convert(tmp_path / "lamp.xml").export(tmp_path / "lamp.glb")
    parts = load_mesh_file(tmp_path / "lamp.glb")
    assert len(parts) == 2   # the group-0 collision box is dropped when visual geoms exist
    world = [trimesh.transform_points(p.mesh.vertices, p.pose) for p in parts]
    pole = max(world, key=lambda w: np.ptp(w[:, 1]))
    assert np.ptp(pole[:, 1]) > 0.9 and np.ptp(pole[:, 0]) < 0.1   # the 0.6 pole along MuJoCo's Z stands on +Y
    colours = {tuple(p.mesh.visual.face_colors[0][:3]) for p in parts}
    assert (229, 25, 25) in colours and (51, 51, 229) in colours
    wheel = tmp_path / "robosuite-1.5.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(bench.OBJECTS + "can.xml", '<mujoco><asset><texture file="../textures/soda.png"/></asset></mujoco>')
        z.writestr(bench.TEXTURES + "soda.png", b"png")
        z.writestr(bench.TEXTURES + "unused.png", b"png")
        z.writestr("robosuite/models/assets/robots/panda/robot.xml", "<mujoco/>")
        z.writestr("robosuite/models/assets/bullet_data/duck.obj", "v 0 0 0")
    bench.extract(wheel, tmp_path / "cache")
    found = sorted(p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert found == [bench.OBJECTS + "can.xml", bench.TEXTURES + "soda.png"]
