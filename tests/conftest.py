"""Helpers shared by the test modules (import them from here: `from conftest import write_shards`): tiny shards in
the shard format, a tiny weights folder, reading shards back with webdataset, running cli.py. No tests here."""
import dataclasses
import glob
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from safetensors.torch import save_file

from model.dit import StreamDiT
from model.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]


def load_bench(name):
    """The bench/ script `name`.py as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_bytes(array: np.ndarray) -> bytes:
    """Encode an HxWx4 uint8 array as an RGBA PNG."""
    out = io.BytesIO()
    Image.fromarray(array, "RGBA").save(out, format="PNG")
    return out.getvalue()


def pair_images(index: int, size: int):
    """A coloured box on transparency and the same box moved right: an asymmetric 'turn' a flip would reverse."""
    rng = np.random.default_rng(index)
    colour = rng.integers(30, 226, 3)
    src = np.zeros((size, size, 4), np.uint8)
    tgt = np.zeros((size, size, 4), np.uint8)
    q = size // 4
    src[q:3 * q, q - 2:2 * q - 2, :3], src[q:3 * q, q - 2:2 * q - 2, 3] = colour, 255
    tgt[q:3 * q, 2 * q + 2:3 * q + 2, :3], tgt[q:3 * q, 2 * q + 2:3 * q + 2, 3] = colour, 255
    return src, tgt


def sample_record(uid: str, pair: int, size: int, index: int, source="procedural") -> dict:
    """One shard sample in the team's format."""
    src, tgt = pair_images(index, size)
    view = {"azimuth_deg": 0.0, "elevation_deg": 10.0, "radius": 2.0, "cam2world": None}
    meta = {"uid": uid, "source": source, "pair": pair, "delta_azimuth_deg": 60.0, "fov_deg": 40.0, "size": size,
            "src": view, "tgt": dict(view, azimuth_deg=60.0)}
    return {"__key__": f"{uid}_{pair:02d}", "src.png": png_bytes(src), "tgt.png": png_bytes(tgt),
            "json": json.dumps(meta).encode()}


def write_shards(folder, objects=8, pairs=2, per_shard=4, size=32, prefix="obj", source="procedural"):
    """Write objects x pairs samples into shard-r000-XXXXXX.tar files of per_shard samples; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    records = [sample_record(f"{prefix}{o:03d}", p, size, o * pairs + p, source) for o in range(objects) for p in range(pairs)]
    for i in range(0, len(records), per_shard):
        with wds.TarWriter(os.path.join(folder, f"shard-r000-{i // per_shard:06d}.tar")) as sink:
            for record in records[i:i + per_shard]:
                sink.write(record)
    return str(folder)


def make_weights(folder, val_fraction=0.5, camera_dim=0, seed=0):
    """A weights folder (model.safetensors, config.json, SHA256SUMS) of an untrained `tiny` network."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dit, diffusion = get_preset("tiny", camera_dim=camera_dim)
    torch.manual_seed(seed)
    net = StreamDiT(dit)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    config = {"model": dataclasses.asdict(dit), "diffusion": dataclasses.asdict(diffusion),
              "data": {"background": "white", "val_fraction": val_fraction}}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    sums = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n"
                   for n in ("config.json", "model.safetensors"))
    (folder / "SHA256SUMS").write_text(sums)
    return folder


def box_image(size, left, colour):
    """A coloured box on transparency, its left edge at column `left`."""
    a = np.zeros((size, size, 4), np.uint8)
    q = size // 4
    a[q:3 * q, left:left + q, :3], a[q:3 * q, left:left + q, 3] = colour, 255
    return a


def write_box_shards(folder, objects=8, pairs=2, size=48, same=False):
    """One shard of objects x pairs samples (box moves right when turned; `same`: target = source)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    view = {"azimuth_deg": 0.0, "elevation_deg": 10.0, "radius": 2.0, "cam2world": None}
    with wds.TarWriter(str(folder / "shard-r000-000000.tar")) as sink:
        for o in range(objects):
            colour = np.random.default_rng(o).integers(30, 226, 3)
            for p in range(pairs):
                src = box_image(size, size // 8 + p, colour)
                tgt = src if same else box_image(size, size // 2 + p, colour)
                meta = {"uid": f"obj{o:03d}", "source": "procedural", "pair": p, "delta_azimuth_deg": 60.0,
                        "fov_deg": 40.0, "size": size, "src": view, "tgt": dict(view, azimuth_deg=60.0)}
                sink.write({"__key__": f"obj{o:03d}_{p:02d}", "src.png": png_bytes(src), "tgt.png": png_bytes(tgt),
                            "json": json.dumps(meta).encode()})
    return folder


def run_cli(*args):
    """Run `python cli.py ARGS` from the project root; returns the CompletedProcess (text output)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def read_shards(folder):
    """{key: sample} of every shard in `folder`, in shard order; fails on a duplicate key."""
    samples = {}
    with wds.WebDataset(sorted(glob.glob(f"{folder}/*.tar")), shardshuffle=False, empty_check=False) as dataset:
        for sample in dataset:
            assert sample["__key__"] not in samples, f"duplicate {sample['__key__']}"
            samples[sample["__key__"]] = sample
    return samples
