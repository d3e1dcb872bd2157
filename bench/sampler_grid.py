"""Sample quality against sampler, step count and guidance scale for one checkpoint, as a table.

    python bench/sampler_grid.py --checkpoint runs/ref --data data/ref --out runs/sampler_grid
    python bench/sampler_grid.py --checkpoint weights/reference --data data/ref --steps 10 25 --cfg 1 2

Scores each setting with `evaluate` on the checkpoint's held-out objects (--split val; never the demo's objects when
choosing defaults) and prints PSNR / SSIM / mask IoU and seconds per setting, next to the baselines. The reports
land in --out (one JSON, CSV and grid per setting); a rerun reuses the reports it finds.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.evaluate import evaluate  # noqa: E402


def main(argv=None):
    """Evaluate every (sampler, steps, cfg) combination asked for and print one row each."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="Run folder, weights folder or URL.")
    p.add_argument("--data", required=True, help="Shards holding the checkpoint's held-out objects.")
    p.add_argument("--out", default="runs/sampler_grid", help="Folder for the reports (default runs/sampler_grid).")
    p.add_argument("--samplers", nargs="+", default=["ddim", "ancestral"], help="Samplers (default ddim ancestral).")
    p.add_argument("--steps", nargs="+", type=int, default=[10, 25, 50], help="Step counts (default 10 25 50).")
    p.add_argument("--cfg", nargs="+", type=float, default=[1.0, 2.0, 3.0], help="Guidance scales (default 1 2 3).")
    p.add_argument("--limit", type=int, default=100, help="Validation pairs per setting (default 100).")
    args = p.parse_args(argv)

    rows = []
    for sampler in args.samplers:
        for steps in args.steps:
            for cfg in args.cfg:
                out = Path(args.out) / f"{sampler}_{steps}_cfg{cfg:g}.json"
                report = json.loads(out.read_text()) if out.exists() else evaluate(
                    args.checkpoint, args.data, out, split="val", steps=steps, sampler=sampler, cfg_scale=cfg,
                    limit=args.limit)
                rows.append(report)

    print(f"\n{args.checkpoint}: {rows[0]['n']} {rows[0]['split']} pairs of {args.data}, seed {rows[0]['seed']}")
    print(f"{'sampler':>10} {'steps':>5} {'cfg':>4} {'PSNR':>7} {'SSIM':>6} {'IoU':>6} {'seconds':>8}")
    for r in rows:
        m = r["model"]
        print(f"{r['sampler']:>10} {r['steps']:>5} {r['cfg_scale']:>4g} {m['psnr']:7.2f} {m['ssim']:6.3f} "
              f"{m['mask_iou']:6.3f} {r['seconds']:8.1f}")
    for who, m in rows[0]["baselines"].items():
        print(f"{who + ' baseline':>22} {m['psnr']:7.2f} {m['ssim']:6.3f} {m['mask_iou']:6.3f}")


if __name__ == "__main__":
    main()
