"""Training-step cost of the model presets in fp32 and bf16 autocast, next to a same-size model built the original way.

Run: .venv/bin/python bench/train_step.py [--device cuda] [--presets tiny demo seed seed-original] [--steps-scale 2]
"""

import argparse
import dataclasses
import gc
import os
import sys
import threading
import time

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model.diffusion import GaussianDiffusion  # noqa: E402
from model.dit import Attention, StreamDiT  # noqa: E402
from model.precision import fast_dtype  # noqa: E402
from model.presets import get_preset  # noqa: E402

BATCH = {"tiny": 32, "demo": 32, "small": 16, "seed": 8, "seed-original": 8}
# Timed steps on a CPU: bf16 matmul without AMX/AVX512-BF16 is two orders of magnitude slower, so there big bf16
# rows get a single step without warm-up (one step is minutes; the first-step overhead is negligible beside it).
# Where the precision picker chooses bf16 the bf16 rows use the fp32 counts.
CPU_STEPS = {("tiny", "fp32"): 20, ("tiny", "bf16"): 3, ("demo", "fp32"): 5, ("demo", "bf16"): 1,
             ("small", "fp32"): 3, ("small", "bf16"): 1, ("seed", "fp32"): 2, ("seed", "bf16"): 1,
             ("seed-original", "fp32"): 2, ("seed-original", "bf16"): 1}


def original_way(net_cfg) -> StreamDiT:
    """Same sizes built as the original project did: no attention output projections, no MLP expansion,
    no condition refinement or direct path (its init differences do not change the cost)."""
    net = StreamDiT(dataclasses.replace(net_cfg, mlp_ratio=1.0, cond_depth=0, cond_direct=False))
    for module in list(net.modules()):
        if isinstance(module, Attention):
            module.proj = torch.nn.Identity()
    return net


def build(name: str):
    """Network and diffusion for a preset name (`<preset>-original` = the original way at that preset's sizes)."""
    preset = name.removesuffix("-original")
    net_cfg, diff_cfg = get_preset(preset)
    net = original_way(net_cfg) if name.endswith("-original") else StreamDiT(net_cfg)
    return net, GaussianDiffusion(diff_cfg), net_cfg.image_size


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled from /proc every few milliseconds."""

    def __enter__(self):
        self.peak, self._stop = self._rss(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _poll(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def train_step(net, diff, opt, x0, cond, dtype):
    """One optimiser step on the hybrid loss, under autocast when dtype is bf16."""
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        loss = diff.training_losses(net, x0, cond)["loss"].mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(name: str, dtype_name: str, device: torch.device, steps: int, warmup: int, batch: int) -> dict:
    """Time `steps` training steps after `warmup` untimed ones; returns one table row."""
    torch.manual_seed(0)
    net, diff, size = build(name)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x0 = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    cond = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        train_step(net, diff, opt, x0, cond, dtype)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        start = time.perf_counter()
        for _ in range(steps):
            train_step(net, diff, opt, x0, cond, dtype)
        sync()
        seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else rss.peak
    row = dict(preset=name, params=sum(p.numel() for p in net.parameters()), batch=batch, dtype=dtype_name,
               device=device.type, ms=1000 * seconds, per_s=batch / seconds, peak_mb=peak / 2**20, steps=steps)
    del net, opt
    gc.collect()
    return row


def print_row(r: dict):
    """One table line, printed as soon as the row is measured so a cut-short run still shows what it got."""
    print(f"{r['preset']:<14} {r['params'] / 1e6:>7.2f}M {r['batch']:>5} {r['dtype']:>5} {r['device']:>6} "
          f"{r['ms']:>10.1f} {r['per_s']:>9.2f} {r['peak_mb']:>11.0f} {r['steps']:>5}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="+", default=["tiny", "demo", "seed", "seed-original"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply the timed steps per row")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    picked = "bf16" if fast_dtype(device) == torch.bfloat16 else "fp32"
    print(f"torch {torch.__version__}, {device.type}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.1f}; "
          f"precision picker chooses {picked} here", flush=True)
    memory = "peak GPU MB" if device.type == "cuda" else "peak RSS MB"
    print(f"{'preset':<14} {'params':>8} {'batch':>5} {'dtype':>5} {'device':>6} {'ms/step':>10} "
          f"{'samples/s':>9} {memory:>11} {'steps':>5}", flush=True)
    jobs = [(p, d) for d in args.dtypes for p in args.presets]  # all fp32 rows first: bf16 rows on a CPU are slow
    start = time.perf_counter()
    for name, dtype_name in tqdm(jobs, desc="bench rows", file=sys.stderr):
        # a CPU with fast bf16 (AMX / AVX512-BF16) times bf16 rows as long as fp32 ones
        step_dtype = "fp32" if picked == "bf16" else dtype_name
        steps = CPU_STEPS.get((name, step_dtype), 2) if device.type == "cpu" else 20
        steps = max(1, round(steps * args.steps_scale))
        warmup = 0 if device.type == "cpu" and steps == 1 else 1
        print_row(measure(name, dtype_name, device, steps, warmup, BATCH.get(name, 8)))
    print(f"{len(jobs)} rows in {time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
