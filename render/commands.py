"""Entry points of the `render` commands: build the object list of each source and run the job."""
import hashlib
from pathlib import Path

from render.jobs import run_render_job
from render.pairs import ObjectSpec, RenderSettings
from render.procedural import make_object, procedural_uid
from render.scene import MESH_SUFFIXES, load_mesh_file
from render.shards import sanitise_uid


def parse_elevation_range(text):
    """'-10,40' -> (-10.0, 40.0)."""
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"--elevation-range wants LOW,HIGH in degrees, e.g. -10,40; got {text!r}") from None
    return low, high


def make_settings(size, pairs_per_object, delta_azimuth, elevation_range, seed, backend):
    """RenderSettings from the common command-line options."""
    return RenderSettings(size=size, pairs_per_object=pairs_per_object, delta_azimuth_deg=float(delta_azimuth),
                          elevation_range=parse_elevation_range(elevation_range), seed=seed, backend=backend)


def render_procedural(count, out, size=256, pairs_per_object=4, delta_azimuth=60.0, elevation_range="-10,40",
                      seed=0, backend="auto", **job):
    """Render `count` built-in objects made from `seed` into shards in `out`."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    settings = make_settings(size, pairs_per_object, delta_azimuth, elevation_range, seed, backend)
    specs = [ObjectSpec(procedural_uid(seed, i), "procedural", make_object, (seed, i)) for i in range(count)]
    return run_render_job(specs, out, settings, "procedural", **job)


def find_mesh_files(paths):
    """(uid, path) for every mesh file named or found (recursively) under the given paths, in a stable order."""
    found = []
    for given in map(Path, paths):
        if not given.exists():
            raise FileNotFoundError(f"{given} does not exist")
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.suffix.lower() in MESH_SUFFIXES and p.is_file())
            found += [(p.relative_to(given).as_posix(), p) for p in files]
        else:
            found.append((given.name, given))
    if not found:
        raise ValueError(f"no {'/'.join(s[1:].upper() for s in MESH_SUFFIXES)} files in {', '.join(map(str, paths))}")
    uids, seen = [], set()
    for name, path in found:
        uid = sanitise_uid(name)
        if uid in seen:   # a.glb and a_glb, or the same name under two folders: keep both, apart
            uid += "-" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        seen.add(uid)
        uids.append((uid, path))
    return uids


def render_meshes(paths, out, size=256, pairs_per_object=4, delta_azimuth=60.0, elevation_range="-10,40",
                  seed=0, backend="auto", **job):
    """Render mesh files (GLB/GLTF/OBJ/PLY/STL), given directly or found in folders, into shards in `out`."""
    settings = make_settings(size, pairs_per_object, delta_azimuth, elevation_range, seed, backend)
    specs = [ObjectSpec(uid, "meshes", load_mesh_file, (str(path),), path=str(path))
             for uid, path in find_mesh_files(paths)]
    return run_render_job(specs, out, settings, "meshes", **job)
