"""Render benchmark: end-to-end pairs/s (load, render, encode, write) vs the bare renderer, and RSS over 2000 renders.

Run: .venv/bin/python bench/render.py [--workers 2] [--quick]   (a few minutes; prints a table)
Wall-clock rates depend on what else runs on the machine, so CPU seconds are counted too: the "per CPU-second"
columns divide the work by the CPU time of all processes (the job's start-up measured apart by a job of one object
per worker and subtracted), i.e. what one otherwise idle core gives; "x workers" multiplies by --workers.
"""
import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train.memory import rss_bytes  # noqa: E402  (imports no torch)

SIZES = (64, 128, 256)
PAIRS = 4


def make_big_mesh(path):
    """A ~200k-triangle object: a vertex-coloured torus (400 x 250 segments) with a box on one side."""
    import trimesh
    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.35, major_sections=400, minor_sections=250)
    angle = np.arctan2(torus.vertices[:, 2], torus.vertices[:, 0])
    torus.visual.vertex_colors = (np.stack([np.cos(angle), np.sin(angle), np.cos(2 * angle)], 1) * 100 + 150
                                  ).astype(np.uint8)
    box = trimesh.creation.box((0.5, 0.5, 0.5))
    box.apply_translation((1.3, 0.3, 0.0))
    box.visual.face_colors = [220, 30, 30, 255]
    trimesh.Scene([torus, box]).export(path)
    return len(torus.faces) + len(box.faces)


def rss_mb():
    """Resident memory of this process now, in MB."""
    return rss_bytes() / 1e6


BARE_OBJECTS = 48   # procedural objects differ a lot in parts and triangles: the bare rate is their mix


def _bare_worker(args):
    """Render prepared objects over and over for `seconds` (each its share of the time); return the rates."""
    size, source, mesh_path, seconds = args
    from render.camera import sample_pairs
    from render.procedural import make_object
    from render.renderer import Renderer
    from render.scene import load_mesh_file
    renderer = Renderer(size)
    objects = ([make_object(0, i) for i in range(BARE_OBJECTS)] if source == "procedural"
               else [load_mesh_file(mesh_path)])
    views = [v for pair in sample_pairs(0, "bench", PAIRS, 60.0, (-10.0, 40.0)) for v in pair]
    done, wall, cpu = 0, 0.0, 0.0
    for parts in objects:
        built = renderer.build_scene(parts)
        renderer.render_scene(built, views)   # the first render uploads the meshes: not part of the bare rate
        started, cpu_started = time.time(), time.process_time()
        while time.time() - started < seconds / len(objects):
            renderer.render_scene(built, views)
            done += len(views)
        wall, cpu = wall + time.time() - started, cpu + time.process_time() - cpu_started
    return done / wall, done / cpu


def bare_pairs_per_s(size, source, mesh_path, workers, seconds):
    """Bare renderer with the same number of processes: (wall pairs/s summed, pairs per CPU-second of one process)."""
    with mp.get_context("spawn").Pool(workers) as pool:
        rates = pool.map(_bare_worker, [(size, source, mesh_path, seconds)] * workers)
    return sum(wall for wall, _ in rates) / 2, sum(cpu for _, cpu in rates) / len(rates) / 2


def cpu_seconds():
    """CPU time of this process and of its finished children (the render workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def end_to_end(size, source, mesh_dir, count, workers, tmp):
    """Run the real job into a fresh folder; return its summary with the CPU seconds of all its processes."""
    from render.commands import render_meshes, render_procedural
    out = Path(tmp) / f"{source}-{size}-{count}"
    shutil.rmtree(out, ignore_errors=True)
    options = dict(size=size, pairs_per_object=PAIRS, workers=workers, shard_size=500)
    before = cpu_seconds()
    if source == "procedural":
        summary = render_procedural(count, out, **options)
    else:
        files = sorted(Path(mesh_dir).glob("*.glb"))[:count]
        summary = render_meshes(files, out, **options)
    summary["cpu_seconds"] = cpu_seconds() - before
    return summary


def rss_over_renders(renders, size=128):
    """RSS of one renderer process before and after `renders` renders of changing procedural objects."""
    from render.camera import sample_pairs
    from render.procedural import make_object
    from render.renderer import Renderer
    renderer = Renderer(size)
    renderer.render_views(make_object(0, 0), [v for p in sample_pairs(0, "x", 1, 60.0, (-10.0, 40.0)) for v in p])
    before, done, index = rss_mb(), 0, 0
    while done < renders:
        views = [v for p in sample_pairs(0, str(index), PAIRS, 60.0, (-10.0, 40.0)) for v in p]
        done += len(renderer.render_views(make_object(1, index), views))
        index += 1
    return before, rss_mb(), done


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer objects, shorter bare runs")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="image sizes to measure, e.g. 64")
    parser.add_argument("--sources", default="procedural,mesh", help="procedural, mesh or both")
    args = parser.parse_args()
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    scale = 0.3 if args.quick else 1.0
    tmp = tempfile.mkdtemp(prefix="bench-render-")
    try:
        mesh_dir = Path(tmp) / "meshes"
        mesh_dir.mkdir()
        triangles = make_big_mesh(mesh_dir / "big-000.glb")
        mesh_path = mesh_dir / "big-000.glb"
        for i in range(1, 24):
            shutil.copy(mesh_path, mesh_dir / f"big-{i:03d}.glb")
        print(f"cpu cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, workers {args.workers}, "
              f"{PAIRS} pairs/object, mesh {triangles} triangles", flush=True)
        header = (f"{'':<27}{'-- pairs/s, wall clock now --':>30}  {'-- pairs per CPU-second --':>34}\n"
                  f"{'source':<12}{'size':>6}{'objects':>9}{'e2e':>10}{'steady':>10}{'bare':>10}"
                  f"{'e2e':>10}{'bare':>8}{'e2e/bare':>10}{'x workers':>11}{'start-up CPU s':>16}")
        rows = []
        for source in args.sources.split(","):
            for size in map(int, args.sizes.split(",")):
                count = int(({64: 600, 128: 400, 256: 150}[size] if source == "procedural" else 24) * scale)
                small = end_to_end(size, source, mesh_dir, args.workers, args.workers, tmp)
                summary = end_to_end(size, source, mesh_dir, count, args.workers, tmp)
                e2e_cpu = ((summary["samples"] - small["samples"])
                           / max(summary["cpu_seconds"] - small["cpu_seconds"], 1e-9))
                steady = ((summary["samples"] - PAIRS * args.workers)
                          / max(summary["seconds"] - summary["startup_seconds"], 1e-9))
                bare, bare_cpu = bare_pairs_per_s(size, source, mesh_path, args.workers, 6 * scale)
                rows.append(f"{source:<12}{size:>6}{summary['objects']:>9}{summary['pairs_per_s']:>10.1f}"
                            f"{steady:>10.1f}{bare:>10.1f}{e2e_cpu:>10.1f}{bare_cpu:>8.1f}{e2e_cpu / bare_cpu:>10.0%}"
                            f"{e2e_cpu * args.workers:>11.1f}{small['cpu_seconds']:>16.1f}")
                print(rows[-1], file=sys.stderr, flush=True)
        before, after, done = rss_over_renders(2000)
        print()
        print(header)
        print("\n".join(rows))
        print(f"\nRSS of one renderer process: {before:.0f} MB at start, {after:.0f} MB after {done} renders "
              f"(128 px, {done // (2 * PAIRS)} different procedural objects): {after - before:+.0f} MB")
        print("e2e = whole job incl. worker start-up; steady = after the first objects; bare = same processes "
              "rendering a prepared scene (no load, encode or write);\nper CPU-second: all processes, writer "
              f"included, start-up excluded (its CPU in the last column); x workers = e2e on {args.workers} idle "
              f"cores; load average now {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
