"""A second real-mesh validation set: Meta-World's hand-modelled objects (coffee machine, faucet, laptop, ...).

Run: .venv/bin/pip install mujoco   # compiles the objects' MuJoCo XML (includes, classes, mesh frames) for us
     .venv/bin/python bench/real_meshes_metaworld.py [--out ~/valsets/metaworld64] [--size 64] [--pairs-per-object 8]

Steps (each skipped when its output exists):
1. `pip download --no-deps metaworld==3.1.1` into --cache (default ~/.cache/dit-nvs/real-meshes; 37 MB).
2. Unzip `metaworld/assets/` (object XML, meshes, textures).
3. Each object in OBJECTS: its XML without the scene include, compiled by MuJoCo; its visual geoms (group 1 where
   there are any) placed where MuJoCo puts them, in their material's colour (a texture's mean colour), Z up turned
   to Y up -> one GLB in <cache>/metaworld-glb.
4. `python cli.py render meshes` into --out, then a preview grid.

OBJECTS is every object XML of the wheel less: the robot (xyz_base), scene pieces (table, table_hole, wall), bare
primitives (block, block_cyl, box, puck, puck_goal, sphere, stick, objA), balls (basketball, soccer_ball), bins
(binA, binB), and second copies (doorlockB, hammerblock, peg_insert, plug_wall, window_horiz, boxtop). Balls, tables, bins and
primitives are left out because the pybullet_data collection, on which the hidden test set draws, has models of
those kinds; nothing here is taken from it. For validation only: never train on it.
"""
import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_meshes import Z_UP_TO_Y_UP, download, render_set  # noqa: E402  (the robosuite part's download and render)

WHEEL = "metaworld==3.1.1"
ASSETS = "metaworld/assets/"
OBJECTS = ["assembly_peg", "basketballhoop", "buttonbox", "club", "coffeemachine", "dial", "doorlockA",
           "drawer", "faucet", "hammer", "handle_press", "laptop", "lever", "mug", "peg_block", "plug", "shelf",
           "shelfb", "soccer_goal", "thermos", "window"]


def extract(wheel, cache):
    """Unzip metaworld/assets/ into `cache`; return its objects folder."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(cache, [n for n in z.namelist() if n.startswith(ASSETS)])
    return cache / ASSETS / "objects"


def compile_object(xml_path):
    """The object's MjModel and MjData after one forward pass, its scene (floor, table, lights) left out."""
    import mujoco
    text = "\n".join(line for line in xml_path.read_text().splitlines() if "basic_scene" not in line)
    bare = xml_path.with_name(f"_bare_{xml_path.name}")   # beside it: the includes are relative to the folder
    bare.write_text(text)
    try:
        model = mujoco.MjModel.from_xml_path(str(bare))
    finally:
        bare.unlink()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def _colour(model, g):
    """A geom's RGBA 0..255: its material's texture's mean colour times the material's rgba, else its rgba."""
    mat = model.geom_matid[g]
    if mat < 0:
        return (model.geom_rgba[g] * 255).astype(int)
    rgba = model.mat_rgba[mat].copy()
    tex = model.mat_texid[mat].max()   # its texture, whatever the role (Meta-World materials carry one at most)
    if tex >= 0:
        adr, n = model.tex_adr[tex], model.tex_width[tex] * model.tex_height[tex] * model.tex_nchannel[tex]
        pixels = model.tex_data[adr:adr + n].reshape(-1, model.tex_nchannel[tex])[:, :3]
        rgba[:3] *= pixels.mean(0) / 255
    return (rgba * 255).astype(int)


def _geom_mesh(model, g):
    """A geom's trimesh in its own frame, or None for planes and other kinds we do not draw."""
    import mujoco
    import trimesh
    kind, size = model.geom_type[g], model.geom_size[g]
    T = mujoco.mjtGeom
    if kind == T.mjGEOM_MESH:
        m = model.geom_dataid[g]
        v0, nv = model.mesh_vertadr[m], model.mesh_vertnum[m]
        f0, nf = model.mesh_faceadr[m], model.mesh_facenum[m]
        return trimesh.Trimesh(model.mesh_vert[v0:v0 + nv].copy(), model.mesh_face[f0:f0 + nf].copy(), process=False)
    if kind == T.mjGEOM_BOX:
        return trimesh.creation.box(2 * size)
    if kind == T.mjGEOM_CYLINDER:
        return trimesh.creation.cylinder(radius=size[0], height=2 * size[1], sections=32)
    if kind == T.mjGEOM_CAPSULE:
        return trimesh.creation.capsule(radius=size[0], height=2 * size[1])
    if kind == T.mjGEOM_SPHERE:
        return trimesh.creation.icosphere(subdivisions=3, radius=size[0])
    if kind == T.mjGEOM_ELLIPSOID:
        return trimesh.creation.icosphere(subdivisions=3, radius=1.0).apply_scale(size)
    return None


def convert(xml_path):
    """One Meta-World object XML -> a trimesh Scene of its visual geoms, Y up."""
    import trimesh
    model, data = compile_object(xml_path)
    geoms = [g for g in range(model.ngeom) if model.geom_bodyid[g] != 0 and model.geom_rgba[g][3] > 0]
    if any(model.geom_group[g] == 1 for g in geoms):   # visual geoms exist: the others are for collision
        geoms = [g for g in geoms if model.geom_group[g] == 1]
    scene = trimesh.Scene()
    for g in geoms:
        mesh = _geom_mesh(model, g)
        if mesh is None:
            continue
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = data.geom_xmat[g].reshape(3, 3), data.geom_xpos[g]
        mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=_colour(model, g))
        scene.add_geometry(mesh, transform=Z_UP_TO_Y_UP @ pose)
    return scene


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/dit-nvs/real-meshes")
    parser.add_argument("--out", type=Path, default=Path.home() / "valsets/metaworld64")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--pairs-per-object", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    objects = extract(download(args.cache, WHEEL), args.cache)
    glb = args.cache / "metaworld-glb"
    glb.mkdir(exist_ok=True)
    for name in OBJECTS:
        convert(objects / f"{name}.xml").export(glb / f"{name}.glb")
        print(f"{name}: {glb / (name + '.glb')}")
    render_set(glb, args.out, args.size, args.pairs_per_object, args.seed)


if __name__ == "__main__":
    main()
