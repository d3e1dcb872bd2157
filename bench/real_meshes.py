"""A real-mesh validation set of our own: robosuite's household objects, converted to GLB and rendered into shards.

Run: .venv/bin/python bench/real_meshes.py [--out ~/valsets/real64] [--size 64] [--pairs-per-object 8]
     .venv/bin/python bench/real_meshes.py --figure docs/images/reference_real_meshes.png [--checkpoint C]
     (the second draws one pair per object of --out through a model: input | generated | true)

Steps (each skipped when its output exists, so a rerun costs nothing):
1. `pip download --no-deps robosuite==1.5.2` into --cache (default ~/.cache/dit-nvs/real-meshes; 157 MB).
2. Unzip only `robosuite/models/assets/objects/` and the object textures those files name (from
   `models/assets/textures/`). Never robosuite's robots, grippers or its `bullet_data` folder: they copy models of
   the pybullet_data collection, on which the hidden test set draws.
3. Each object's MuJoCo XML -> one GLB in <cache>/glb: mesh geoms from the OBJ beside the mesh file (with its MTL
   texture), primitive geoms (box, cylinder, capsule, sphere) built by trimesh in the textures' mean colour, body
   poses applied, MuJoCo's Z-up turned to our Y-up.
4. `python cli.py render meshes <cache>/glb --out OUT --size SIZE --pairs-per-object N`, then a preview grid.

For validation only: never train on it, never choose on pybullet_data meshes.
"""
import argparse
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "robosuite==1.5.2"
OBJECTS = "robosuite/models/assets/objects/"
TEXTURES = "robosuite/models/assets/textures/"
# Left out: the "-visual" copies of objects already in, and `door` (door_lock is the same door with a latch).
SKIP = {"door"}
Z_UP_TO_Y_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


def download(cache, requirement=WHEEL):
    """The wheel of `requirement` (name==version) in `cache`, downloaded once with pip (no dependencies)."""
    pattern = requirement.replace("==", "-") + "-*.whl"
    if not sorted(cache.glob(pattern)):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(cache)],
                       check=True)
    return sorted(cache.glob(pattern))[0]


def extract(wheel, cache):
    """Unzip the objects folder and the textures its XML and MTL files name; return the objects folder."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith(OBJECTS) and "bullet_data" not in n]
        z.extractall(cache, names)
        wanted = set()
        for name in names:
            if name.endswith((".xml", ".mtl")):
                text = z.read(name).decode("utf-8", "replace")
                wanted |= {TEXTURES + Path(w).name for w in text.replace('"', " ").split() if "textures/" in w}
        z.extractall(cache, sorted(wanted & set(z.namelist())))
    return cache / OBJECTS


def _floats(text, default):
    return np.array([float(v) for v in text.split()]) if text else np.array(default, dtype=np.float64)


def _pose(element):
    """A body's or geom's 4x4 pose from pos and quat (w x y z) or axisangle."""
    import trimesh
    pose = np.eye(4)
    if element.get("quat"):
        pose = trimesh.transformations.quaternion_matrix(_floats(element.get("quat"), [1, 0, 0, 0]))
    elif element.get("axisangle"):
        axis_angle = _floats(element.get("axisangle"), [0, 0, 1, 0])
        pose = trimesh.transformations.rotation_matrix(axis_angle[3], axis_angle[:3])
    pose[:3, 3] = _floats(element.get("pos"), [0, 0, 0])
    return pose


def _mean_colour(path):
    """The average colour of a texture image as RGBA 0..255."""
    from PIL import Image
    with Image.open(path) as image:
        return list(np.asarray(image.convert("RGB").resize((16, 16))).reshape(-1, 3).mean(0).astype(int)) + [255]


def convert(xml_path):
    """One MuJoCo object XML -> a trimesh Scene, Y up (geometry only: sites, joints and physics ignored)."""
    import trimesh
    root = ET.parse(xml_path).getroot()
    folder = xml_path.parent
    meshes = {m.get("name"): m for m in root.iter("mesh")}
    textures = {t.get("name"): folder / t.get("file") for t in root.iter("texture") if t.get("file")}
    materials = {m.get("name"): m for m in root.iter("material")}
    geoms = [(g, pose) for g, pose in _walk(root.find("worldbody"), np.eye(4))]
    if any(g.get("group") == "1" for g, _ in geoms):   # visual geoms exist: the group 0 copies are for collision
        geoms = [(g, pose) for g, pose in geoms if g.get("group") == "1"]
    scene = trimesh.Scene()
    for geom, pose in geoms:
        mesh = _geom_mesh(geom, meshes, folder)
        if mesh is None:
            continue
        if mesh.visual.kind != "texture" or getattr(mesh.visual.material, "image", None) is None:
            mesh.visual = trimesh.visual.ColorVisuals(mesh)   # no image (the bottle's MTL has none): paint it
            material = materials.get(geom.get("material"))
            rgba = _floats(geom.get("rgba") or (material.get("rgba") if material is not None else None),
                           [0.7, 0.7, 0.7, 1])
            colour = (rgba * 255).astype(int).tolist()
            if material is not None and material.get("texture") in textures:
                colour = _mean_colour(textures[material.get("texture")])
            mesh.visual.face_colors = colour
        else:   # MuJoCo shows the texture times the XML material's rgba (default white); the MTL's Kd is unused
            material = materials.get(geom.get("material"))
            rgba = _floats(material.get("rgba") if material is not None else None, [1, 1, 1, 1])
            mesh.visual.material = trimesh.visual.material.PBRMaterial(
                baseColorTexture=mesh.visual.material.image, baseColorFactor=(rgba * 255).astype(int),
                metallicFactor=0.0, roughnessFactor=0.8)
        scene.add_geometry(mesh, transform=Z_UP_TO_Y_UP @ pose)
    return scene


def _walk(body, parent):
    """(geom, world pose) under a body, body poses composed."""
    for child in body:
        if child.tag == "body":
            yield from _walk(child, parent @ _pose(child))
        elif child.tag == "geom":
            yield child, parent @ _pose(child)


def _load_mtl_texture(mesh, obj):
    """Open the MTL's map_Kd image ourselves: trimesh's resolver does not follow its `../../textures/` path."""
    from PIL import Image
    mtl = obj.with_suffix(".mtl")
    for line in mtl.read_text().splitlines() if mtl.exists() else []:
        if line.strip().startswith("map_Kd"):
            image = Image.open(obj.parent / line.split(None, 1)[1].strip())
            image.load()
            mesh.visual.material.image = image
            return


def _geom_mesh(geom, meshes, folder):
    """The trimesh of one geom: its mesh (the OBJ beside it, textured by its MTL) or a primitive."""
    import trimesh
    kind, size = geom.get("type", "sphere"), _floats(geom.get("size"), [0.01, 0.01, 0.01])
    if kind == "mesh":
        asset = meshes[geom.get("mesh")]
        path = folder / asset.get("file")
        obj = path.with_suffix(".obj")
        loaded = trimesh.load(str(obj if obj.exists() else path), force="mesh", process=False)
        loaded.apply_scale(_floats(asset.get("scale"), [1, 1, 1]))
        if loaded.visual.kind == "texture" and getattr(loaded.visual.material, "image", None) is None:
            _load_mtl_texture(loaded, obj)
        return loaded
    if kind == "box":
        return trimesh.creation.box(2 * size[:3])
    if kind in ("cylinder", "capsule"):
        segment = None
        if geom.get("fromto"):   # given by its end points instead of size[1] and a pose
            ends = _floats(geom.get("fromto"), [0, 0, 0, 0, 0, 1]).reshape(2, 3)
            segment = trimesh.geometry.align_vectors([0, 0, 1], ends[1] - ends[0])
            segment[:3, 3] = ends.mean(0)
            half = np.linalg.norm(ends[1] - ends[0]) / 2
        else:
            half = size[1]
        mesh = (trimesh.creation.cylinder(radius=size[0], height=2 * half, sections=32) if kind == "cylinder"
                else trimesh.creation.capsule(radius=size[0], height=2 * half))
        return mesh if segment is None else mesh.apply_transform(segment)
    if kind == "sphere":
        return trimesh.creation.icosphere(subdivisions=3, radius=size[0])
    return None


def figure(data, out, checkpoint=None, pair=1):
    """One pair per object of the set (its `pair`-th), turned by the model with the sampling defaults."""
    import torch
    from tqdm import tqdm
    sys.path.insert(0, str(ROOT))
    from datasets.stream import DataSpec, iter_pairs
    from train import defaults as D
    from train.grid import grid_image
    from train.sample import make_generator
    from train.weights import load_for_inference, resolve_checkpoint

    net, diffusion, config = load_for_inference(resolve_checkpoint(checkpoint))
    chosen = {}
    for p in iter_pairs(DataSpec(str(data), config["model"]["image_size"], config["data"]["background"])):
        if p["key"].endswith(f"_{pair:02d}"):
            chosen.setdefault(p["uid"], p)
    src, tgt = (torch.stack([p[k] for p in chosen.values()]) for k in ("src", "tgt"))
    generate = make_generator(net, diffusion, steps=D.DEFAULT_STEPS, sampler=D.DEFAULT_SAMPLER, eta=D.DEFAULT_ETA,
                              cfg_scale=D.DEFAULT_CFG, seed=D.DEFAULT_SEED, batch_size=len(src),
                              bar=tqdm(total=D.DEFAULT_STEPS, desc="sampling"))
    with torch.no_grad():
        generated = generate(src, None)
    grid_image([("input", src), ("generated", generated), ("true", tgt)]).save(out)
    print(f"{len(src)} objects ({', '.join(chosen)}) -> {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/dit-nvs/real-meshes")
    parser.add_argument("--out", type=Path, default=Path.home() / "valsets/real64")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--pairs-per-object", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, help="draw the set of --out through --checkpoint into this PNG")
    parser.add_argument("--checkpoint", default=None, help="for --figure (default: the shipped reference)")
    args = parser.parse_args()
    if args.figure:
        return figure(args.out, args.figure, args.checkpoint)
    args.cache.mkdir(parents=True, exist_ok=True)
    objects = extract(download(args.cache), args.cache)
    glb = args.cache / "glb"
    glb.mkdir(exist_ok=True)
    for xml in sorted(objects.glob("*.xml")):
        name = xml.stem
        if name.endswith("-visual") or name in SKIP:
            continue
        convert(xml).export(glb / f"{name}.glb")
        print(f"{name}: {glb / (name + '.glb')}")
    render_set(glb, args.out, args.size, args.pairs_per_object, args.seed)


def render_set(glb, out, size, pairs_per_object, seed):
    """`render meshes` of the GLB folder into `out`, then a preview grid beside it."""
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "render", "meshes", str(glb), "--out", str(out),
                    "--size", str(size), "--pairs-per-object", str(pairs_per_object), "--seed", str(seed)], check=True)
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "shards", "preview", str(out),
                    "--out", str(out.parent / f"{out.name}-preview.png"), "--count", "24", "--shuffle"], check=True)


if __name__ == "__main__":
    main()
