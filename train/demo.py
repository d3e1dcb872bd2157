"""`make demo`: render procedural objects, train the demo preset for a bounded time, evaluate, draw a turntable.

Every stage is skipped when its output exists, so running it again after a kill resumes where it stopped.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from datasets.images import to_pil
from datasets.stream import DataSpec, iter_pairs
from train.defaults import DEFAULT_STEPS
from train.evaluate import evaluate, format_table
from train.sample import sample, save_image
from train.weights import PROJECT_ROOT, shipped_weights

DEMO_SEED = 7                 # the procedural objects; fixed so every machine renders the same data
RENDER_SIZE = 64              # rendered at twice the model's 32 px: resizing down anti-aliases the edges
TURNTABLE_VIEWS = 6           # once round for a model of 60-degree turns (the demo renders those)


def stage(name, done, fn):
    """Run fn unless `done` (a path) exists; announce either way."""
    if Path(done).exists():
        print(f"[demo] {name}: done already ({done})", file=sys.stderr)
        return
    print(f"[demo] {name} ...", file=sys.stderr)
    started = time.time()
    fn()
    print(f"[demo] {name}: {time.time() - started:.0f} s", file=sys.stderr)


def run_cli(*args):
    """Run one `cli.py` command in a child process (its progress bars go to our terminal); fail loudly."""
    command = [sys.executable, str(PROJECT_ROOT / "cli.py"), *map(str, args)]
    if subprocess.run(command, cwd=PROJECT_ROOT).returncode != 0:
        raise SystemExit(f"[demo] failed: {' '.join(command[1:])}")


def render(data, objects, pairs_per_object):
    """Render the procedural objects (train and validation alike: the split is by object id, made later)."""
    run_cli("render", "procedural", "--count", objects, "--size", RENDER_SIZE, "--pairs-per-object",
            pairs_per_object, "--seed", DEMO_SEED, "--out", data)


def train(data, run_dir, preset, minutes, val_fraction, done):
    """Train from scratch (or resume a killed run) for a bounded time; mark the run finished."""
    resume = ["--resume"] if (run_dir / "config.json").exists() else []
    # The time budget stops it, not the step count; checkpoints every few minutes keep a kill cheap.
    run_cli("train", "--data", data, "--out", run_dir, "--preset", preset, "--max-minutes", minutes,
            "--steps", 10**7, "--ckpt-minutes", 3, "--val-fraction", val_fraction, *resume)
    done.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def turntable_input(data, out_png, val_fraction):
    """Save the source view of the first validation pair: an object no model here was trained on."""
    pair = next(iter_pairs(DataSpec(data, RENDER_SIZE, "white", split="val", val_fraction=val_fraction)))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    save_image(to_pil(pair["src"]), out_png)
    return pair["uid"]


def main(argv=None):
    """Parse the demo's few options and run the stages."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="Demo folder (default runs/demo).")
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("DEMO_MINUTES", 12)),
                        help="Training time budget in minutes (env DEMO_MINUTES; default 12).")
    parser.add_argument("--objects", type=int, default=1200, help="Procedural objects to render (default 1200).")
    parser.add_argument("--pairs-per-object", type=int, default=4, help="View pairs per object (default 4).")
    parser.add_argument("--val-fraction", type=float, default=0.05,
                        help="Share of objects held out for validation, by object id (default 0.05).")
    parser.add_argument("--preset", default="demo", help="Model preset (default demo; tests use tiny).")
    parser.add_argument("--eval-steps", type=int, default=DEFAULT_STEPS,
                        help=f"Sampler steps for evaluation and turntable (default {DEFAULT_STEPS}).")
    parser.add_argument("--eval-limit", type=int, default=200, help="Validation pairs evaluated (default 200).")
    args = parser.parse_args(argv)
    run_demo(**vars(args))


def run_demo(out, minutes, objects, pairs_per_object, val_fraction, preset, eval_steps, eval_limit):
    """The whole demo; prints the tables and where the pictures are."""
    started = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, run_dir = out / "data", out / "run"
    # The render job skips finished objects itself, so it runs every time and resumes a killed render.
    print(f"[demo] render {objects} procedural objects x {pairs_per_object} pairs ...", file=sys.stderr)
    render(data, objects, pairs_per_object)
    val_uids = {p["uid"] for p in iter_pairs(DataSpec(data, 8, split="val", val_fraction=val_fraction))}
    if not val_uids:
        raise SystemExit(f"[demo] no validation objects among {objects} at --val-fraction {val_fraction}")
    print(f"[demo] {len(val_uids)} objects held out for validation by object id (never trained or tuned on)",
          file=sys.stderr)

    train_done = out / "train.done"
    stage(f"train {preset} for {minutes:g} min", train_done,
          lambda: train(data, run_dir, preset, minutes, val_fraction, train_done))

    settings = dict(data=data, split="val", steps=eval_steps, limit=eval_limit, seed=0)
    stage("evaluate the demo model", out / "eval.json",
          lambda: evaluate(run_dir, out=out / "eval.json", **settings))
    reference = shipped_weights()
    if reference:
        # the demo's own held-out objects, whatever split the reference model used when it was trained
        stage(f"evaluate the shipped weights {reference[0].name}", out / "eval_reference.json",
              lambda: evaluate(reference[0], out=out / "eval_reference.json", val_fraction=val_fraction, **settings))

    turntable_dir = out / "turntable"
    picture_model = reference[0] if reference else run_dir
    uid = None

    def draw_turntable():
        nonlocal uid
        uid = turntable_input(data, turntable_dir / "input.png", val_fraction)
        sample(picture_model, [turntable_dir / "input.png"], turntable_dir, steps=eval_steps,
               turntable=TURNTABLE_VIEWS)
    stage(f"turntable of a validation object with {picture_model}", turntable_dir / "input_turntable.gif",
          draw_turntable)

    print()
    for name, path in (("demo model", out / "eval.json"), ("shipped weights", out / "eval_reference.json")):
        if path.exists():
            print(f"{name} ({path}):\n{format_table(json.loads(path.read_text()))}\n")
    print(f"pictures: {out / 'eval.png'} (condition | generated | target | mean, validation pairs)")
    print(f"          {turntable_dir / 'input_turntable.png'} and .gif ({TURNTABLE_VIEWS} views of a validation "
          f"object{f' {uid}' if uid else ''}, by {picture_model})")
    print(f"          {run_dir / 'samples'} (training-time sample grids)")
    print(f"[demo] finished in {(time.time() - started) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
