"""Quality against training CPU-minutes: train a preset from scratch in chunks and evaluate after each chunk.

    python bench/time_to_quality.py --minutes 15                      # demo preset, eval every 3 min
    python bench/time_to_quality.py --minutes 30 --set prediction=eps --name eps --plot eps.png
    python bench/time_to_quality.py --minutes 10 --every 5 --seed 1 --raw --name demo-seed1   # + raw weights

Renders its own procedural data (seed 100, never the demo's objects) once into --data, trains in --out/<name>
with `train --resume` for --every minutes at a time, and after each chunk scores the EMA weights on the data's
validation objects (PSNR, SSIM, mask IoU) next to the copy-the-input and mean-target baselines. Minutes on the
x axis are training wall-clock minutes on this machine (all its cores); evaluation time is not counted.
Prints one row per chunk and writes curve.json (and a PNG plot with --plot) in the run folder.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from render.commands import render_procedural  # noqa: E402
from train.defaults import DEFAULT_CFG, DEFAULT_SAMPLER, DEFAULT_STEPS  # noqa: E402
from train.evaluate import evaluate  # noqa: E402
from train.loop import train  # noqa: E402

DATA_SEED = 100  # objects for studies: disjoint from the demo's (seed 7) and the reference model's (seed 1000)


def last_log(run_dir: Path) -> dict:
    """The last line of a run's log.jsonl (samples seen and training seconds so far)."""
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return json.loads(lines[-1]) if lines else {}


def plot(curve: list, baselines: dict, path: Path, title: str) -> None:
    """Mask IoU, PSNR and SSIM against minutes, with the baselines as dashed lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    minutes = [row["minutes"] for row in curve]
    for ax, metric in zip(axes, ("mask_iou", "psnr", "ssim")):
        ax.plot(minutes, [row[metric] for row in curve], "o-", label="model (EMA)")
        for (name, values), style in zip(baselines.items(), ("--", ":")):
            ax.axhline(values[metric], linestyle=style, color="grey", label=f"{name} baseline")
        ax.set_xlabel("training minutes (2-core CPU)")
        ax.set_title(metric)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    """Parse options, render data if needed, then alternate training chunks and evaluations."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15, help="Training budget in minutes (default 15).")
    p.add_argument("--every", type=float, default=3, help="Minutes of training between evaluations (default 3).")
    p.add_argument("--preset", default="demo", help="Model preset (default demo).")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="Model/diffusion override, as in `train --set` (repeatable).")
    p.add_argument("--batch-size", type=int, default=None, help="Training batch (default: train's).")
    p.add_argument("--lr", type=float, default=None, help="Peak learning rate (default: the preset's).")
    p.add_argument("--ema-halflife", type=float, default=None, help="EMA half-life in samples (default: train's).")
    p.add_argument("--ema-rampup", type=float, default=None, help="EMA warm-up ramp, as train's (default: train's).")
    p.add_argument("--warmup-steps", type=int, default=None, help="Learning-rate warm-up steps (default: train's).")
    p.add_argument("--seed", type=int, default=None, help="Training seed (default: train's).")
    p.add_argument("--raw", action="store_true", help="Also score the raw training weights at each point.")
    p.add_argument("--data", default="runs/ttq/data", help="Study data folder (rendered once; default runs/ttq/data).")
    p.add_argument("--objects", type=int, default=1200, help="Procedural objects rendered into --data (default 1200).")
    p.add_argument("--out", default="runs/ttq", help="Parent folder of the study runs (default runs/ttq).")
    p.add_argument("--name", default=None, help="Run name (default: preset plus overrides).")
    p.add_argument("--eval-pairs", type=int, default=200, help="Validation pairs scored per point (default 200).")
    p.add_argument("--eval-steps", type=int, default=DEFAULT_STEPS, help="Sampler steps (default: sample's).")
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, help="ddim or ancestral (default: sample's).")
    p.add_argument("--cfg-scale", type=float, default=DEFAULT_CFG, help="Guidance scale (default: sample's).")
    p.add_argument("--plot", default=None, help="Also save the curve as this PNG.")
    args = p.parse_args(argv)

    name = args.name or "_".join([args.preset, *[o.replace("=", "-") for o in args.overrides]])
    run_dir = Path(args.out) / name
    render_procedural(count=args.objects, out=args.data, size=64, pairs_per_object=4, seed=DATA_SEED)

    options = {k: v for k, v in dict(batch_size=args.batch_size, lr=args.lr, ema_halflife=args.ema_halflife,
                                     ema_rampup=args.ema_rampup, warmup_steps=args.warmup_steps,
                                     seed=args.seed).items() if v is not None}
    curve_file = run_dir / "curve.json"
    stored = json.loads(curve_file.read_text()) if curve_file.exists() else {}
    curve, baselines = stored.get("curve", []), stored.get("baselines", {})  # a killed study resumes
    while True:
        done = last_log(run_dir).get("time_s", 0) / 60 if (run_dir / "log.jsonl").exists() else 0.0
        if done >= args.minutes - 0.05:
            break
        chunk = min(args.every, args.minutes - done)
        resume = (run_dir / "config.json").exists()
        train(args.data, run_dir, resume=resume, preset=args.preset, overrides=args.overrides or None,
              steps=10**9, max_minutes=chunk, sample_every=0, progress=False, **({} if resume else options))
        log = last_log(run_dir)
        started = time.monotonic()
        report = evaluate(run_dir, args.data, run_dir / f"eval_{log['step']:07d}.json", split="val",
                          steps=args.eval_steps, sampler=args.sampler, cfg_scale=args.cfg_scale,
                          limit=args.eval_pairs)
        baselines = report["baselines"]
        point = {"minutes": round(log["time_s"] / 60, 2), "step": log["step"], "samples": log["samples"],
                 "eval_s": round(time.monotonic() - started, 1), **report["model"]}
        if args.raw:
            raw = evaluate(run_dir, args.data, run_dir / f"eval_raw_{log['step']:07d}.json", split="val",
                           steps=args.eval_steps, sampler=args.sampler, cfg_scale=args.cfg_scale,
                           limit=args.eval_pairs, weights="raw")
            point["raw"] = raw["model"]
        curve.append(point)
        curve_file.write_text(json.dumps({"name": name, "curve": curve, "baselines": baselines},
                                                       indent=2) + "\n")

    print(f"\n{name}: validation metrics against training minutes (EMA weights, {args.sampler} "
          f"{args.eval_steps} steps, cfg {args.cfg_scale}, {args.eval_pairs} pairs)")
    print(f"{'minutes':>8} {'samples':>9} {'PSNR':>7} {'SSIM':>6} {'IoU':>6}")
    for row in curve:
        print(f"{row['minutes']:8.1f} {row['samples']:9d} {row['psnr']:7.2f} {row['ssim']:6.3f} {row['mask_iou']:6.3f}")
        if "raw" in row:
            r = row["raw"]
            print(f"{'raw weights':>18} {r['psnr']:7.2f} {r['ssim']:6.3f} {r['mask_iou']:6.3f}")
    for who, m in baselines.items():
        print(f"{who + ' baseline':>18} {m['psnr']:7.2f} {m['ssim']:6.3f} {m['mask_iou']:6.3f}")
    if args.plot and curve:
        plot(curve, baselines, Path(args.plot), name)
        print(f"curve plot: {args.plot}")


if __name__ == "__main__":
    main()
