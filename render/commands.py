"""Entry points of the `render` commands: build the object list of each source and run the job."""
import hashlib
from pathlib import Path

from render.jobs import run_render_job
from render.views import ObjectSpec, RenderSettings
from render.procedural import make_object, procedural_uid
from render.scene import MESH_SUFFIXES, load_mesh_file
from render.shards import sanitise_uid


def parse_elevation_range(text):
    """'-10,40' (or a (low, high) pair) -> (-10.0, 40.0)."""
    if isinstance(text, (tuple, list)):
        text = ",".join(map(str, text))
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"--elevation-range wants LOW,HIGH in degrees, e.g. -10,40; got {text!r}") from None
    return low, high


def make_settings(delta_azimuth=RenderSettings.delta_azimuth_deg, elevation_range=RenderSettings.elevation_range,
                  **options):
    """RenderSettings from the common command-line options (size, seed, backend, ... by their field names)."""
    return RenderSettings(delta_azimuth_deg=float(delta_azimuth),
                          elevation_range=parse_elevation_range(elevation_range), **options)


def render_procedural(count, out, workers=None, rank=None, world_size=None, **options):
    """Render `count` built-in objects made from `seed` into shards in `out` (options: see RenderSettings)."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    settings = make_settings(**options)
    if not 0 <= settings.symmetric_share <= 1:
        raise ValueError(f"--symmetric-share must lie in [0, 1], got {settings.symmetric_share}")
    specs = [ObjectSpec(procedural_uid(settings.seed, i), "procedural", make_object,
                        (settings.seed, i, settings.symmetric_share)) for i in range(count)]
    return run_render_job(specs, out, settings, "procedural", workers, rank, world_size)


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


def render_meshes(paths, out, workers=None, rank=None, world_size=None, **options):
    """Render mesh files (GLB/GLTF/OBJ/PLY/STL), given directly or found in folders, into shards in `out`."""
    settings = make_settings(**options)
    specs = [ObjectSpec(uid, "meshes", load_mesh_file, (str(path),), path=str(path))
             for uid, path in find_mesh_files(paths)]
    return run_render_job(specs, out, settings, "meshes", workers, rank, world_size)
