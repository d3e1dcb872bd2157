"""Score a checkpoint's turned views against the true targets, next to the copy-the-input and mean-image baselines."""
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from datasets.images import background_rgb
from datasets.stream import DataSpec, iter_pairs
from train.config import turn_deg
from train.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_CFG, DEFAULT_ETA, DEFAULT_MEAN_PAIRS, DEFAULT_SAMPLER,
                            DEFAULT_SEED, DEFAULT_SPLIT, DEFAULT_STEPS)
from train.grid import grid_image
from train.metrics import MASK_THRESHOLD, PSNR_CAP_DB, all_metrics, to_unit_hwc
from train.sample import check_sampler_options, make_generator, pick_device, save_image
from train.turntable import describe_turn
from train.weights import load_for_inference, resolve_checkpoint

METRICS = ("psnr", "ssim", "mask_iou")
ROWS = ("model", "copy", "mean")
GRID_ROWS = 16


def mean_target(data: DataSpec, max_pairs):
    """Mean target image [3,H,W] of the training split of `data` (the whole of it if that split is empty)."""
    for split in ("train", "all"):
        total, n = None, 0
        for pair in itertools.islice(iter_pairs(dataclasses.replace(data, split=split)), max_pairs):
            total = pair["tgt"].double() if total is None else total + pair["tgt"]
            n += 1
        if n:
            return (total / n).float(), f"{split} split of {data.shards} ({n} pairs)"
    raise ValueError(f"no pairs in {data.shards}")


def evaluate(checkpoint, data, out, split=DEFAULT_SPLIT, steps=DEFAULT_STEPS, sampler=DEFAULT_SAMPLER, eta=DEFAULT_ETA,
             cfg_scale=DEFAULT_CFG, seed=DEFAULT_SEED, limit=None, batch_size=DEFAULT_BATCH_SIZE, device="auto",
             mean_pairs=DEFAULT_MEAN_PAIRS, val_fraction=None,
             cache_dir=None, weights="ema"):
    """Evaluate on the `split` pairs of `data` (one source or a list, scored as one set); write the JSON report, a
    per-pair CSV and a PNG grid; return the report."""
    sources = [str(data)] if isinstance(data, (str, Path)) else [str(d) for d in data]
    check_sampler_options(steps, eta, cfg_scale, batch_size)
    if (limit is not None and limit < 1) or mean_pairs < 1:
        raise ValueError("--limit and --mean-pairs must be at least 1")
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise ValueError(f"--out must name a .json report, got {out}")
    path = resolve_checkpoint(checkpoint, cache_dir)
    net, diffusion, config = load_for_inference(path, device=pick_device(device), weights=weights)
    size, background = config["model"]["image_size"], config["data"].get("background", "white")
    if val_fraction is None:
        val_fraction = config["data"].get("val_fraction")
    if val_fraction is None:
        if split == "val":
            raise ValueError(f"--split val: {path}/config.json records no val_fraction, so which objects were held "
                             "out is unknown; use --split all")
        val_fraction = 0.0   # --split all reads every pair; the mean baseline then averages all of them

    spec = DataSpec(sources if len(sources) > 1 else sources[0], size, background, split, val_fraction)
    pairs = list(itertools.islice(iter_pairs(spec), limit))
    if not pairs:
        hint = "; try --split all" if split != "all" else ""
        raise ValueError(f"no {split} pairs in {', '.join(sources)} (val_fraction {val_fraction}){hint}")
    mean_image, mean_from = mean_target(spec, mean_pairs)
    src = torch.stack([p["src"] for p in pairs])
    tgt = torch.stack([p["tgt"] for p in pairs])
    camera = torch.stack([p["camera"] for p in pairs]) if config["model"].get("camera_dim", 0) else None

    start = time.time()
    with tqdm(total=math.ceil(len(pairs) / batch_size) * steps, desc=f"evaluate {len(pairs)} pairs", unit="step") as bar:
        generate = make_generator(net, diffusion, steps=steps, sampler=sampler, eta=eta, cfg_scale=cfg_scale,
                                  seed=seed, batch_size=batch_size, bar=bar)
        generated = generate(src, camera)
    seconds = time.time() - start

    bg = background_rgb(background)
    rows = []
    for i, pair in enumerate(pairs):
        target = to_unit_hwc(tgt[i])
        guesses = {"model": generated[i], "copy": src[i], "mean": mean_image}
        scores = {who: all_metrics(to_unit_hwc(img), target, bg) for who, img in guesses.items()}
        rows.append({"key": pair["key"], "uid": pair["uid"],
                     **{f"{who}_{m}": scores[who][m] for who in ROWS for m in METRICS}})
    average = {who: {m: sum(r[f"{who}_{m}"] for r in rows) / len(rows) for m in METRICS} for who in ROWS}

    report = {
        "model": average["model"],
        "baselines": {"copy": average["copy"], "mean": average["mean"]},
        "n": len(rows),
        "checkpoint": str(checkpoint if checkpoint is not None else path),
        "weights": weights,
        "sampler": sampler,
        "steps": steps,
        "eta": eta,
        "cfg_scale": cfg_scale,
        "seed": seed,
        "data": ", ".join(sources),
        "split": split,
        "val_fraction": val_fraction,
        "image_size": size,
        "background": background,
        "turn_deg": turn_deg(config),
        "mean_from": mean_from,
        "mask_threshold": MASK_THRESHOLD,
        "psnr_cap_db": PSNR_CAP_DB,
        "seconds": round(seconds, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out.with_suffix(".csv"))
    save_image(eval_grid(src, generated, tgt, mean_image, background), out.with_suffix(".png"))
    write_text(out, json.dumps(report, indent=2) + "\n")   # last: its presence means the evaluation is complete
    print(format_table(report), file=sys.stdout)
    print(f"evaluated {len(rows)} {split} pairs in {seconds:.1f} s -> {out}, {out.with_suffix('.csv').name}, "
          f"{out.with_suffix('.png').name}", file=sys.stderr)
    return report


def write_text(path, text):
    """Write a text file atomically (temporary name, then rename)."""
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:   # a full disk: no half-written temporary left behind
        tmp.unlink(missing_ok=True)
        raise


def write_csv(rows, path):
    """One line per evaluated pair: its key, object uid and every metric of the model and both baselines."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})
    write_text(path, buffer.getvalue())


def eval_grid(src, generated, tgt, mean_image, background):
    """Rows of the first GRID_ROWS pairs, labelled: input (= the copy baseline) | generated | true | mean baseline."""
    n = min(GRID_ROWS, len(src))
    return grid_image([("input", src[:n]), ("generated", generated[:n]), ("true", tgt[:n]), ("mean", mean_image)],
                      background=tuple(255 - c for c in background_rgb(background)))


def format_table(report):
    """The report as a small text table: one row for the model and one per baseline."""
    rows = {"model": report["model"], **{f"{k} baseline": v for k, v in report["baselines"].items()}}
    lines = [f"{'':16} {'PSNR dB':>8} {'SSIM':>6} {'mask IoU':>9}"]
    for name, m in rows.items():
        lines.append(f"{name:16} {m['psnr']:8.2f} {m['ssim']:6.3f} {m['mask_iou']:9.3f}")
    lines.append(f"n = {report['n']} {report['split']} pairs ({describe_turn(report['turn_deg'])}), "
                 f"{report['sampler']} {report['steps']} steps, "
                 f"cfg {report['cfg_scale']}, {report['image_size']} px, checkpoint {report['checkpoint']}")
    return "\n".join(lines)
