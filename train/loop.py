"""The training loop: AdamW with warm-up and clipping, EMA, precision, DDP, logs, sample grids, checkpoints, resume."""
import itertools
import math
import os
import random
import signal
import sys
import threading
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from datasets.pairs import iter_pairs, make_loader
from model.precision import autocast, cpu_has_fast_bf16, fast_dtype
from train import distributed
from train.checkpoint import build, load_checkpoint, remove_stale_temporaries, save_checkpoint
from train.config import DATA_DEFAULTS, TRAIN_DEFAULTS, parse_overrides, resolve, write_json_atomic
from train.ema import EMA
from train.grid import save_grid
from train.logs import Meter, RunLog, rss_mb

PREVIEW_PAIRS = 4  # rows of the periodic sample grids


class StopRequest:
    """The first Ctrl-C or SIGTERM asks the loop to save and stop after the current step; a second Ctrl-C quits at once."""

    def __init__(self):
        self.requested = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.requested = signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"\n{self.requested}: saving a checkpoint after this step (Ctrl-C again to quit without saving)",
              file=sys.stderr)

    def __exit__(self, *_):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def rng_state(device: torch.device) -> dict:
    """Every random generator the training step draws from."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore rng_state()'s generators."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's random."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def precision_dtype(precision: str, device: torch.device) -> torch.dtype:
    """auto: bf16 only where it is fast (CUDA, or a CPU with AMX / AVX512-BF16), fp32 elsewhere."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if device.type == "cpu" and not cpu_has_fast_bf16():
            print("warning: this CPU has no fast bf16 (AMX / AVX512-BF16): bf16 will be far slower than fp32",
                  file=sys.stderr)
        return torch.bfloat16
    return fast_dtype(device)


def next_batch(batches):
    """The next batch; a data error raised inside a loader worker is reported by its own one-line message."""
    try:
        return next(batches)
    except ValueError as e:
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "data error"
        raise ValueError(last.split("Error: ", 1)[-1] if "Original Traceback" in str(e) else last) from None


def preview_pairs(config: dict) -> dict | None:
    """A few fixed pairs for sample grids: validation objects when there are any, else training ones."""
    data = config["data"]
    size = config["model"]["image_size"]
    for split in ("val", "train"):
        pairs = list(itertools.islice(iter_pairs(data["shards"], size, data["background"], split,
                                                 data["val_fraction"]), PREVIEW_PAIRS))
        if pairs:
            return {k: torch.stack([p[k] for p in pairs]) for k in ("src", "tgt", "camera")}
    return None


def save_preview(out, step, ema_model, diffusion, preview, config, dtype, device) -> None:
    """Write samples/step_XXXXXXX.png: condition | EMA model's DDIM sample | target, with a fixed seed."""
    if preview is None:
        return
    cond = preview["src"].to(device)
    camera = preview["camera"].to(device) if config["model"]["camera_dim"] else None
    generator = torch.Generator().manual_seed(config["train"]["seed"])  # own generator: training RNG untouched
    with autocast(device, dtype):
        generated = diffusion.sample(ema_model, cond, steps=config["train"]["sample_steps"], sampler="ddim",
                                     camera=camera, generator=generator)
    os.makedirs(os.path.join(out, "samples"), exist_ok=True)
    save_grid(os.path.join(out, "samples", f"step_{step:07d}.png"), preview["src"], generated.float().cpu(),
              preview["tgt"])


def train(data=None, out=None, *, resume=False, image_size=None, overrides=None, progress=True, **options) -> dict:
    """Train a run in folder `out` on shards `data` (a spec or list of specs); returns a summary dict.

    options: any key of train.config.TRAIN_DEFAULTS or DATA_DEFAULTS (preset, steps, batch_size, lr, max_minutes,
    precision, compile, workers, seed, background, val_fraction, ...); None or absent = the stored run's value on
    resume, else the default. image_size and overrides (["depth=4", ...]) change the preset's model/diffusion.
    Under torchrun every rank calls this; rank 0 writes the files.
    """
    unknown = set(options) - set(TRAIN_DEFAULTS) - set(DATA_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    if out is None:
        raise ValueError("--out is required")
    model_overrides = parse_overrides(overrides)
    if image_size is not None:
        model_overrides["image_size"] = image_size
    d = distributed.setup()
    try:
        return _train(d, data, str(out), resume, model_overrides, options, progress)
    finally:
        distributed.cleanup(d)


def _train(d, data, out, resume, model_overrides, options, progress) -> dict:
    """train() once the process group is up."""
    if d.main:
        os.makedirs(out, exist_ok=True)
    distributed.barrier(d)
    config, stored = resolve(out, resume, data, options, model_overrides)
    distributed.barrier(d)  # every rank has read the folder before rank 0 writes into it
    t, data_cfg, size = config["train"], config["data"], config["model"]["image_size"]
    if t["batch_size"] % d.world_size:
        raise ValueError(f"--batch-size {t['batch_size']} is not divisible by the {d.world_size} processes")
    if d.main:
        write_json_atomic(os.path.join(out, "config.json"), config)
        remove_stale_temporaries(out)

    seed_everything(t["seed"] + d.rank)  # ranks draw different noise and condition dropout
    net, diffusion = build(config, d.device)
    net.train()
    ema = EMA(net, t["ema_halflife"], t["ema_rampup"])
    opt = torch.optim.AdamW(net.parameters(), lr=t["lr"], betas=(0.9, 0.999), weight_decay=t["weight_decay"])
    state = load_checkpoint(out, net, ema.model, opt, d.device) if stored is not None else None
    step, samples, trained_s = (state["step"], state["samples"], state["elapsed_s"]) if state else (0, 0, 0.0)
    if d.main and resume:
        print(f"resuming {out} at step {step}" if state else f"no checkpoint in {out} yet: starting at step 0",
              file=sys.stderr)

    dtype = precision_dtype(t["precision"], d.device)
    model = net
    if d.world_size > 1:
        model = DistributedDataParallel(net, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if t["compile"]:
        model = torch.compile(model)
    loader = make_loader(data_cfg["shards"], size, t["batch_size"] // d.world_size, data_cfg["background"], "train",
                         data_cfg["val_fraction"], t["workers"], seed=t["seed"] + step,  # a resumed run reshuffles
                         shuffle_buffer=t["shuffle_buffer"])
    preview = preview_pairs(config) if d.main else None
    log = RunLog(out) if d.main else None
    if state:
        rngs = state["rng"]
        if len(rngs) == d.world_size:
            set_rng_state(rngs[d.rank], d.device)
        else:  # another process count: fresh but reproducible streams
            seed_everything(t["seed"] + d.rank + 7919 * step)

    camera_dim = config["model"]["camera_dim"]
    meter, readers = Meter(), {}
    start = last_log = last_save = time.monotonic()
    start_step, saved_step, samples_at_log, waited = step, step if state else -1, samples, 0.0
    smooth_loss, lr_now, stopped = None, t["lr"], "steps"
    bar = tqdm(total=t["steps"], initial=step, disable=not (progress and d.main), desc="train", unit="step",
               dynamic_ncols=True, file=sys.stderr)

    def save():
        nonlocal saved_step, last_save
        rngs = distributed.gather(d, rng_state(d.device))
        if d.main:
            save_checkpoint(out, net, ema.model, opt, {"step": step, "samples": samples, "rng": rngs,
                                                        "elapsed_s": trained_s + time.monotonic() - start,
                                                        "world_size": d.world_size})
        distributed.barrier(d)
        saved_step, last_save = step, time.monotonic()

    batches = iter(loader)
    with StopRequest() as stop:
        try:
            while step < t["steps"]:
                tick = time.monotonic()
                try:
                    batch = next_batch(batches)
                except RuntimeError:
                    if stop.requested:  # loader workers killed by the same signal
                        stopped = "interrupted"
                        break
                    raise
                waited += time.monotonic() - tick
                src, tgt = batch["src"].to(d.device, non_blocking=True), batch["tgt"].to(d.device, non_blocking=True)
                camera = batch["camera"].to(d.device) if camera_dim else None
                readers[batch["reader"]] = batch["skipped"].tolist()

                lr_now = t["lr"] * min(1.0, (step + 1) / max(1, t["warmup_steps"]))
                for group in opt.param_groups:
                    group["lr"] = lr_now
                with autocast(d.device, dtype):
                    terms = diffusion.training_losses(model, tgt, src, camera=camera)
                loss = terms["loss"].mean()
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise ValueError(f"training diverged: loss {loss_value} at step {step + 1}; the last checkpoint "
                                     f"is kept (try a lower --lr or --precision fp32)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), t["grad_clip"])
                opt.step()
                step += 1
                samples += t["batch_size"]
                ema_decay = ema.update(net, samples, t["batch_size"])

                meter.add({"loss": loss_value, "mse": terms["mse"].mean().item(), "vb": terms["vb"].mean().item(),
                           "grad_norm": float(grad_norm), **diffusion.loss_quartiles(terms)})
                smooth_loss = loss_value if smooth_loss is None else 0.95 * smooth_loss + 0.05 * loss_value
                now = time.monotonic()
                bar.update(1)
                speed = t["batch_size"] * (step - start_step) / max(now - start, 1e-9)
                bar.set_postfix(loss=f"{smooth_loss:.4f}", samples_s=f"{speed:.1f}", refresh=False)

                over_time = t["max_minutes"] is not None and now - start >= 60 * t["max_minutes"]
                due = step % t["ckpt_every"] == 0 or now - last_save >= 60 * t["ckpt_minutes"]
                halt, due = distributed.any_rank(d, [stop.requested or over_time, due])
                if d.main and (step % t["log_every"] == 0 or halt or step == t["steps"]):
                    skipped = np.sum(list(readers.values()), axis=0).tolist() if readers else [0, 0]
                    log.write(step, dict(meter.means(), samples=samples, lr=lr_now, ema_decay=ema_decay,
                                         samples_per_s=(samples - samples_at_log) / max(now - last_log, 1e-9),
                                         data_wait=waited / max(now - last_log, 1e-9), rss_mb=rss_mb(),
                                         time_s=trained_s + now - start, skipped_shards=skipped[0],
                                         skipped_samples=skipped[1]))
                    last_log, samples_at_log, waited = now, samples, 0.0
                if d.main and t["sample_every"] and step % t["sample_every"] == 0 and step < t["steps"]:
                    save_preview(out, step, ema.model, diffusion, preview, config, dtype, d.device)
                if halt:
                    stopped = "interrupted" if stop.requested else "time budget"
                    break
                if due and step < t["steps"]:
                    save()
        except KeyboardInterrupt:  # the second Ctrl-C: leave without saving
            bar.close()
            if log:
                log.close()
            raise
        bar.close()
        if step != saved_step:
            save()
        if d.main:
            save_preview(out, step, ema.model, diffusion, preview, config, dtype, d.device)
            log.close()

    elapsed = time.monotonic() - start
    speed = t["batch_size"] * (step - start_step) / max(elapsed, 1e-9)
    summary = {"step": step, "samples": samples, "loss": smooth_loss, "samples_per_s": speed, "stopped": stopped,
               "checkpoint": os.path.join(out, "checkpoint")}
    if d.main:
        why = {"steps": "done", "time budget": "time budget reached",
               "interrupted": "interrupted; continue with --resume"}[stopped]
        loss_text = f"{smooth_loss:.4f}" if smooth_loss is not None else "n/a"
        print(f"train: steps {start_step} -> {step} in {elapsed / 60:.1f} min ({speed:.1f} samples/s), "
              f"loss {loss_text}, {why}; checkpoint in {summary['checkpoint']}")
    return summary
