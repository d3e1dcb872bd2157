"""Mesh files: scenes keep node transforms and textures; every kind of bad input is recorded or refused clearly."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from PIL import Image

from render.commands import find_mesh_files, render_meshes
from render.scene import load_mesh_file
from conftest import read_shards

ROOT = Path(__file__).resolve().parents[1]


def _two_part_glb(path):
    """Red box at the origin and a blue box placed 3 units along +X by its scene node."""
    red = trimesh.creation.box((1, 1, 1))
    red.visual.face_colors = [220, 20, 20, 255]
    blue = trimesh.creation.box((1, 1, 1))
    blue.visual.face_colors = [20, 20, 220, 255]
    scene = trimesh.Scene()
    scene.add_geometry(red, node_name="red")
    scene.add_geometry(blue, node_name="blue", transform=trimesh.transformations.translation_matrix([3, 0, 0]))
    scene.export(path)


def _textured_glb(path):
    """A quad whose texture is left half green, right half magenta."""
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, :8] = [0, 200, 0]
    pixels[:, 8:] = [200, 0, 200]
    quad = trimesh.Trimesh(vertices=[[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]],
                           process=False)
    quad.visual = trimesh.visual.TextureVisuals(uv=[[0, 0], [1, 0], [1, 1], [0, 1]], image=Image.fromarray(pixels))
    quad.export(path)


def test_node_transforms_survive_and_the_object_is_normalised(tmp_path):
    _two_part_glb(tmp_path / "pair.glb")
    parts = load_mesh_file(tmp_path / "pair.glb")
    centres = sorted(trimesh.transform_points(p.mesh.vertices, p.pose).mean(0)[0] for p in parts)
    assert len(parts) == 2 and centres[1] - centres[0] == pytest.approx(3 / 4)   # 3 apart in a 4-wide object
    world = np.concatenate([trimesh.transform_points(p.mesh.vertices, p.pose) for p in parts])
    assert np.ptp(world, 0).max() == pytest.approx(1.0) and np.allclose(world.min(0) + world.max(0), 0)


def test_textures_are_rendered(tmp_path):
    from render.camera import View
    from render.renderer import Renderer
    _textured_glb(tmp_path / "quad.glb")
    renderer = Renderer(48)
    image = renderer.render_views(load_mesh_file(tmp_path / "quad.glb"), [View(0.0, 0.0)])[0]
    renderer.close()
    rgb, opaque = image[..., :3].astype(int), image[..., 3] > 0
    green = opaque & (rgb[..., 1] > rgb[..., 0] + 60)
    magenta = opaque & (rgb[..., 0] > rgb[..., 1] + 60)
    assert green.sum() > 100 and magenta.sum() > 100
    assert np.nonzero(green)[1].mean() < np.nonzero(magenta)[1].mean()   # texture not mirrored


def _bad_files(folder):
    """Every kind of broken mesh file, next to one good one."""
    folder.mkdir()
    _two_part_glb(folder / "good.glb")
    good = (folder / "good.glb").read_bytes()
    (folder / "zero.glb").write_bytes(b"")
    (folder / "random.glb").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "truncated.glb").write_bytes(good[: len(good) // 2])
    (folder / "page.glb").write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    (folder / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\n")
    (folder / "notes.txt").write_text("not a mesh, not picked up")


def test_bad_files_are_recorded_and_the_good_one_rendered(tmp_path):
    _bad_files(tmp_path / "in")
    summary = render_meshes([tmp_path / "in"], tmp_path / "out", size=32, pairs_per_object=2, workers=2)
    failures = {row["uid"]: row for row in map(json.loads, open(tmp_path / "out" / "failures.jsonl"))}
    assert set(failures) == {"zero_glb", "random_glb", "truncated_glb", "page_glb", "nan_obj"}
    assert all(row["reason"] and row["path"].startswith(str(tmp_path)) for row in failures.values())
    assert "non-finite" in failures["nan_obj"]["reason"]
    # Reasons say what is wrong with the file, not which parser step tripped over it.
    assert failures["zero_glb"]["reason"] == "unreadable: empty file"
    assert failures["page_glb"]["reason"] == "unreadable: not a GLB: starts with `<!DOCTYPE`"
    assert failures["random_glb"]["reason"].startswith("unreadable: not a GLB: starts with b'")
    assert failures["truncated_glb"]["reason"].startswith("unreadable: broken GLB: version 2, header says")
    assert not any("Error" in row["reason"] for row in failures.values())
    samples = list(read_shards(tmp_path / "out").values())
    assert sorted(s["__key__"] for s in samples) == ["good_glb_00", "good_glb_01"]
    meta = json.loads(samples[0]["json"])
    assert meta["source"] == "meshes" and meta["path"].endswith("good.glb")
    assert np.asarray(Image.open(io.BytesIO(samples[0]["src.png"]))).shape == (32, 32, 4)
    assert summary["failed"] == 5 and summary["objects"] == 1


def test_mesh_uids_are_unique_and_stable(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.glb", "a/x_glb.obj", "b.STL"):
        (tmp_path / name).write_bytes(b"")
    uids = [uid for uid, _ in find_mesh_files([tmp_path])]
    assert uids[0] == "a_x_glb" and uids[2] == "b_STL" and len(set(uids)) == 3


def test_cli_errors_are_one_line(tmp_path):
    import cli
    (tmp_path / "empty").mkdir()
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "thesis.pdf").write_bytes(b"%PDF")
    _two_part_glb(tmp_path / "one.glb")
    runner = CliRunner()
    cases = {
        "no GLB/GLTF/OBJ/PLY/STL files": ["render", "meshes", str(tmp_path / "empty"), "--out", str(tmp_path / "o1")],
        "does not exist": ["render", "meshes", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")],
        "not shards of this tool": ["render", "meshes", str(tmp_path / "one.glb"), "--out", str(tmp_path / "theirs")],
    }
    for message, args in cases.items():
        result = runner.invoke(cli.cli, args)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, args
        assert len(result.output.strip().splitlines()) == 1
    assert (tmp_path / "theirs" / "thesis.pdf").read_bytes() == b"%PDF"
