"""The training loop: AdamW with warm-up and clipping, EMA, precision, DDP, logs, sample grids, checkpoints, resume."""
import itertools
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from datasets.stream import DataSpec, iter_pairs, make_loader
from model.precision import autocast, cpu_has_fast_bf16, fast_dtype
from train import distributed
from train.checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from train.config import parse_overrides, resolve, write_json_atomic
from train.defaults import DATA_DEFAULTS, TRAIN_DEFAULTS
from train.ema import EMA
from train.grid import save_grid
from train.logs import RunLog, summarize
from train.runlock import RunLock
from train.startup import startup_line
from train.weights import build, init_from

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


def use_compile(setting, preset: str) -> bool:
    """auto: compile for every preset but tiny, whose test-sized runs finish before a compile would pay back."""
    return setting is True or (setting == "auto" and preset != "tiny")


def make_optimizer(net, t: dict, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; the fused kernel on CPU and CUDA (one pass over the weights instead of a dozen elementwise ops)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(net.parameters(), lr=t["lr"], betas=(0.9, 0.999), weight_decay=t["weight_decay"],
                             fused=fused)


def next_batch(batches, stop: StopRequest):
    """The next batch, or None when a stop request killed the loader workers; a data error raised inside a loader
    worker is reported by its own one-line message."""
    try:
        return next(batches)
    except RuntimeError:
        if stop.requested:  # loader workers killed by the same signal
            return None
        raise
    except ValueError as e:
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "data error"
        raise ValueError(last.split("Error: ", 1)[-1] if "Original Traceback" in str(e) else last) from None


@dataclass
class Todo:
    """What a step does once every rank has agreed: write a log line, a sample grid, a checkpoint, or stop."""
    log: bool
    preview: bool
    save: bool
    stop: bool


def what_now(t: dict, step: int, halt: bool, save_due: bool) -> Todo:
    """Decide a step's work after the cross-rank check (halt: a stop request or the time budget on any rank); the
    last step logs, and leaves its preview and checkpoint to the end of the run."""
    last = halt or step == t["steps"]
    return Todo(log=step % t["log_every"] == 0 or last,
                preview=bool(t["sample_every"]) and step % t["sample_every"] == 0 and not last,
                save=save_due and not last, stop=halt)


def advance_bar(bar, t: dict, step: int, speed: float, elapsed_s: float, loss: float) -> None:
    """One step on the progress bar; under a time budget its total is the step the budget will stop at."""
    if t["max_minutes"] is not None:
        left_s = max(0.0, 60 * t["max_minutes"] - elapsed_s)
        bar.total = min(t["steps"], step + round(left_s * speed / t["batch_size"]))
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{speed:.1f}", refresh=False)


def preview_pairs(config: dict) -> dict | None:
    """A few fixed pairs for sample grids: validation objects when there are any, else training ones."""
    for split in ("val", "train"):
        pairs = list(itertools.islice(iter_pairs(DataSpec.of_run(config, split)), PREVIEW_PAIRS))
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


def train(data=None, out=None, *, resume=False, image_size=None, overrides=None, progress=True, device="auto",
          **options) -> dict:
    """Train a run in folder `out` on shards `data` (a spec or list of specs); returns a summary dict.

    options: any key of train.defaults.TRAIN_DEFAULTS or DATA_DEFAULTS (preset, steps, batch_size, lr, max_minutes,
    precision, compile, workers, seed, background, val_fraction, ...); None or absent = the stored run's value on
    resume, else the default. image_size and overrides (["depth=4", ...]) change the preset's model/diffusion.
    device: auto (CUDA when available), cpu or cuda. progress: the progress bar (False: start-up and summary lines
    only). Under torchrun every rank calls this; rank 0 writes the files.
    """
    unknown = set(options) - set(TRAIN_DEFAULTS) - set(DATA_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    if out is None:
        raise ValueError("--out is required")
    model_overrides = parse_overrides(overrides)
    if image_size is not None:
        model_overrides["image_size"] = image_size
    d = distributed.setup(device)
    lock = RunLock(str(out))
    try:
        if d.main:
            os.makedirs(out, exist_ok=True)
        busy = lock.try_acquire() if d.main else None   # a second run into the same folder would mix both
        if distributed.any_rank(d, [busy is not None])[0]:
            raise FileExistsError(busy or f"{out} is in use by another train run")
        return _train(d, data, str(out), resume, model_overrides, options, progress)
    finally:
        lock.release()
        distributed.cleanup(d)


class Trainer:
    """One process's share of a run: network, EMA, optimizer, counters, and (on rank 0) the run folder's outputs."""

    def __init__(self, d, config: dict, out: str, resumable: bool):
        self.d, self.config, self.out, self.t = d, config, out, config["train"]
        seed_everything(self.t["seed"] + d.rank)  # ranks draw different noise and condition dropout
        self.net, self.diffusion = build(config, d.device)
        if self.t.get("init_from") and not resumable:   # before the EMA copy, so both start from those weights
            init_from(self.net, self.t["init_from"], config["model"])
        self.net.train()
        self.ema = EMA(self.net, self.t["ema_halflife"], self.t["ema_rampup"])
        self.opt = make_optimizer(self.net, self.t, d.device)
        state = load_checkpoint(out, self.net, self.ema.model, self.opt, d.device) if resumable else None
        self.state = state
        self.step, self.samples, self.trained_s = (state["step"], state["samples"], state["elapsed_s"]) if state \
            else (0, 0, 0.0)
        self.saved_step = self.step if state else -1
        self.dtype = precision_dtype(self.t["precision"], d.device)
        self.compiled = use_compile(self.t["compile"], self.t["preset"])
        if self.compiled:  # in place, so the EMA copy made above and the checkpoints' keys stay plain
            torch._dynamo.config.suppress_errors = True  # no C++ compiler or an unsupported op: run those eagerly
            self.net.compile_blocks()
        self.model = self.net
        if d.world_size > 1:
            self.model = DistributedDataParallel(self.net, device_ids=[d.device.index] if d.device.type == "cuda"
                                                 else None)
        self.window = []  # per-sample loss terms and grad norms since the last log line
        self.lr = self.t["lr"]
        self.ema_decay = 0.0
        self.started = time.monotonic()

    def restore_rng(self) -> None:
        """Put back the random generators saved with the checkpoint (last: after everything that draws from them)."""
        if self.state is None:
            return
        rngs = self.state["rng"]
        if len(rngs) == self.d.world_size:
            set_rng_state(rngs[self.d.rank], self.d.device)
        else:  # another process count: fresh but reproducible streams
            seed_everything(self.t["seed"] + self.d.rank + 7919 * self.step)

    def train_step(self, batch: dict) -> float:
        """One optimizer step on a batch; returns the loss (and stops the run if it is not finite)."""
        device = self.d.device
        src, tgt = batch["src"].to(device, non_blocking=True), batch["tgt"].to(device, non_blocking=True)
        camera = batch["camera"].to(device) if self.config["model"]["camera_dim"] else None
        self.lr = self.t["lr"] * min(1.0, (self.step + 1) / max(1, self.t["warmup_steps"]))
        for group in self.opt.param_groups:
            group["lr"] = self.lr
        with autocast(device, self.dtype):
            t = self.diffusion.sample_timesteps(tgt.shape[0], device, self.t["high_noise_share"])
            terms = self.diffusion.training_losses(self.model, tgt, src, t=t, camera=camera)
        loss = terms["loss"].mean()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise ValueError(f"training diverged: loss {loss_value} at step {self.step + 1}; the last checkpoint is "
                             f"kept (try a lower --lr or --precision fp32)")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.t["grad_clip"])
        self.opt.step()
        self.step += 1
        self.samples += self.t["batch_size"]
        self.ema_decay = self.ema.update(self.net, self.samples, self.t["batch_size"])
        self.window.append({"loss": terms["loss"].detach(), "mse": terms["mse"], "vb": terms["vb"],
                            "t": terms["t"].float(), "grad_norm": grad_norm.detach()})
        return loss_value

    def interval_stats(self) -> dict:
        """Loss statistics since the last call (then forgotten)."""
        stats = summarize(self.window, self.diffusion.loss_quartiles)
        self.window = []
        return stats

    def save(self) -> None:
        """Checkpoint (a collective: every rank sends its RNG state; rank 0 writes)."""
        rngs = distributed.gather(self.d, rng_state(self.d.device))
        if self.d.main:
            save_checkpoint(self.out, self.net, self.ema.model, self.opt,
                            {"step": self.step, "samples": self.samples, "rng": rngs, "world_size": self.d.world_size,
                             "elapsed_s": self.trained_s + time.monotonic() - self.started})
        distributed.barrier(self.d)
        self.saved_step = self.step

    def preview(self, pairs) -> None:
        """Sample grid of the EMA weights on the fixed preview pairs (rank 0)."""
        save_preview(self.out, self.step, self.ema.model, self.diffusion, pairs, self.config, self.dtype,
                     self.d.device)


def _train(d, data, out, resume, model_overrides, options, progress) -> dict:
    """train() once the process group is up."""
    if d.main:
        remove_stale_temporaries(out)   # first: on a full disk they hold the room that config.json needs
    distributed.barrier(d)
    config, stored = resolve(out, resume, data, options, model_overrides)
    distributed.barrier(d)  # every rank has read the folder before rank 0 writes into it
    t = config["train"]
    if t["batch_size"] % d.world_size:
        raise ValueError(f"--batch-size {t['batch_size']} is not divisible by the {d.world_size} processes")
    if d.main:
        write_json_atomic(os.path.join(out, "config.json"), config)

    run = Trainer(d, config, out, resumable=stored is not None)
    start_step = run.step
    if d.main:
        print(startup_line(config, run.net, d.device, run.dtype, out, d.world_size, run.compiled), file=sys.stderr)
    if d.main and resume:
        print(f"resuming {out} at step {run.step}" if run.state else f"no checkpoint in {out} yet: starting at step 0",
              file=sys.stderr)
    loader = make_loader(DataSpec.of_run(config, "train"), t["batch_size"] // d.world_size, t["workers"],
                         seed=t["seed"] + run.step, shuffle_buffer=t["shuffle_buffer"])  # a resumed run reshuffles
    preview = preview_pairs(config) if d.main else None
    log = RunLog(out) if d.main else None
    run.restore_rng()

    start = last_save = time.monotonic()
    if log:
        log.begin(start, run.samples)
    smooth_loss, stopped = None, "steps"
    bar = tqdm(total=t["steps"], initial=run.step, disable=not (progress and d.main), desc="train", unit="step",
               dynamic_ncols=True, file=sys.stderr)
    batches = iter(loader)
    with StopRequest() as stop:
        try:
            while run.step < t["steps"]:
                tick = time.monotonic()
                batch = next_batch(batches, stop)
                if batch is None:
                    stopped = "interrupted"
                    break
                if log:
                    log.batch(batch["skipped_new"], time.monotonic() - tick)
                loss = run.train_step(batch)

                smooth_loss = loss if smooth_loss is None else 0.95 * smooth_loss + 0.05 * loss
                now = time.monotonic()
                advance_bar(bar, t, run.step, t["batch_size"] * (run.step - start_step) / max(now - start, 1e-9),
                            now - start, smooth_loss)
                over_time = t["max_minutes"] is not None and now - start >= 60 * t["max_minutes"]
                save_due = run.step % t["ckpt_every"] == 0 or now - last_save >= 60 * t["ckpt_minutes"]
                halt, save_due = distributed.any_rank(d, [stop.requested or over_time, save_due])
                todo = what_now(t, run.step, halt, save_due)

                if todo.log:
                    stats = run.interval_stats()
                    if log:
                        log.interval(run.step, stats, now, run.samples, run.trained_s + now - start, lr=run.lr,
                                     ema_decay=run.ema_decay)
                if todo.preview and d.main:
                    run.preview(preview)
                if todo.stop:
                    stopped = "interrupted" if stop.requested else "time budget"
                    break
                if todo.save:
                    run.save()
                    last_save = time.monotonic()
        except BaseException:  # the second Ctrl-C (leave without saving) or an error: the message on a line of its own
            bar.close()
            if log:
                log.close()
            raise
        bar.close()
        if run.step != run.saved_step:
            run.save()
        if d.main:
            run.preview(preview)
            log.close()

    elapsed = time.monotonic() - start
    speed = t["batch_size"] * (run.step - start_step) / max(elapsed, 1e-9)
    summary = {"step": run.step, "samples": run.samples, "loss": smooth_loss, "samples_per_s": speed,
               "stopped": stopped, "checkpoint": os.path.join(out, "checkpoint")}
    if d.main:
        why = {"steps": "done", "time budget": "time budget reached",
               "interrupted": "interrupted; continue with --resume"}[stopped]
        loss_text = f"{smooth_loss:.4f}" if smooth_loss is not None else "n/a"
        print(f"train: steps {start_step} -> {run.step} in {elapsed / 60:.1f} min ({speed:.1f} samples/s), "
              f"loss {loss_text}, {why}; checkpoint in {summary['checkpoint']}")
    return summary
