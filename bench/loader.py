"""Loader throughput (decode, composite, resize) next to training-step consumption; optional RSS over a tiny run.

    .venv/bin/python bench/loader.py                 # table: loader samples/s at 64/256 px, 1/2 workers vs training
    .venv/bin/python bench/loader.py --rss           # also RSS at steps 100 and 2000 of a tiny run
    .venv/bin/python bench/loader.py --data D        # measure real shards instead of synthetic ones
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import webdataset as wds  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from datasets.stream import DataSpec, make_loader  # noqa: E402
from model.diffusion import GaussianDiffusion  # noqa: E402
from model.dit import StreamDiT  # noqa: E402
from model.presets import get_preset  # noqa: E402


def render_like(size: int, rng) -> bytes:
    """An RGBA PNG resembling a render: a shaded blob on transparency with some texture."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        box = sorted(rng.integers(size // 8, size - size // 8, 2)), sorted(rng.integers(size // 8, size - size // 8, 2))
        draw.ellipse([box[0][0], box[1][0], box[0][1] + 2, box[1][1] + 2], fill=tuple(rng.integers(0, 255, 3)) + (255,))
    noise = Image.fromarray(rng.integers(0, 40, (size, size, 3), dtype=np.uint8), "RGB").filter(ImageFilter.BLUR)
    rgb = Image.blend(img.convert("RGB"), noise, 0.2)
    rgb.putalpha(img.getchannel("A"))
    out = tempfile.SpooledTemporaryFile()
    rgb.save(out, format="PNG")
    out.seek(0)
    return out.read()


def synthetic_shards(folder: str, size: int, count: int = 256, per_shard: int = 64) -> str:
    """Shards in the team's format with render-like pairs of the given size."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(size)
    for s in range(count // per_shard):
        with wds.TarWriter(os.path.join(folder, f"shard-r000-{s:06d}.tar")) as sink:
            for i in range(per_shard):
                uid = f"obj{s * per_shard + i:05d}"
                meta = {"uid": uid, "source": "procedural", "pair": 0, "delta_azimuth_deg": 60.0, "fov_deg": 40.0,
                        "size": size, "src": {"azimuth_deg": 0.0, "elevation_deg": 10.0, "radius": 2.0,
                                              "cam2world": None}, "tgt": {"azimuth_deg": 60.0, "elevation_deg": 10.0,
                                                                           "radius": 2.0, "cam2world": None}}
                sink.write({"__key__": f"{uid}_00", "src.png": render_like(size, rng), "tgt.png": render_like(size, rng),
                            "json": json.dumps(meta).encode()})
    return folder


def loader_rate(data: str, size: int, workers: int, batch: int = 32, batches: int = 24) -> float:
    """Samples/s the loader delivers (after its first batches, so worker start-up is not counted)."""
    spec = DataSpec(data, size, split="train", val_fraction=0.0)
    it = iter(make_loader(spec, batch, workers=workers, shuffle_buffer=256))
    for _ in range(2 * max(workers, 1)):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def train_rate(preset: str, batch: int = 32, steps: int = 3) -> tuple:
    """(image size, samples/s) of forward + backward + AdamW steps for a preset, in fp32."""
    model_cfg, diffusion_cfg = get_preset(preset)
    net, diffusion = StreamDiT(model_cfg), GaussianDiffusion(diffusion_cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, model_cfg.image_size, model_cfg.image_size)
    for i in range(steps + 1):
        if i == 1:  # the first step allocates
            start = time.perf_counter()
        loss = diffusion.training_losses(net, x, x)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model_cfg.image_size, steps * batch / (time.perf_counter() - start)


def rss_run(folder: str) -> None:
    """Train the tiny preset for 2000 steps and print the main process RSS logged at steps 100 and 2000."""
    from train.loop import train

    data = synthetic_shards(os.path.join(folder, "rss-data"), 64)
    run = os.path.join(folder, "rss-run")
    train(data, run, preset="tiny", steps=2000, batch_size=8, log_every=100, sample_every=0, workers=2)
    with open(os.path.join(run, "log.jsonl")) as f:
        rss = {r["step"]: r["rss_mb"] for r in map(json.loads, f)}
    print(f"RSS of the training process: step 100 {rss[100]:.0f} MB, step 2000 {rss[2000]:.0f} MB "
          f"({rss[2000] - rss[100]:+.0f} MB)")


def main():
    """Print the table (and the RSS line with --rss)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="existing shards to read (default: synthetic render-like shards)")
    parser.add_argument("--rss", action="store_true", help="also run 2000 tiny training steps and report RSS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
        print("| shards px | model px | workers | loader samples/s |")
        print("|---|---|---|---|")
        for src, size in ((64, 64), (256, 64), (256, 256)):
            data = args.data or synthetic_shards(os.path.join(tmp, f"s{src}"), src)
            for workers in (1, 2):
                print(f"| {'given' if args.data else src} | {size} | {workers} | {loader_rate(data, size, workers):.0f} |",
                      flush=True)
        print("\n| preset | model px | training samples/s (batch 32, fp32) |")
        print("|---|---|---|")
        for preset in ("tiny", "seed"):
            size, rate = train_rate(preset)
            print(f"| {preset} | {size} | {rate:.1f} |", flush=True)
        if args.rss:
            rss_run(tmp)


if __name__ == "__main__":
    main()
