"""Training-step speed of the presets: samples/s, achieved TFLOP/s, the matmul peak measured now, and MFU.

Two paths per preset and precision: `eager` (the step as it was before the speed work: plain eager autocast, the
fused CPU attention kernel, foreach AdamW) and `default` (what `train` does now: attention as matmuls on a CPU, the
blocks compiled, fused AdamW). FLOPs are counted from the model's shapes (model/flops.py); the peak is timed in the
same run with matmuls of the preset's own widths.

Run: .venv/bin/python bench/train_step.py [--presets demo small] [--precisions fp32 bf16] [--json rows.json]
     .venv/bin/python bench/train_step.py --profile demo   # where one step's time goes, eager and default
"""

import argparse
import contextlib
import gc
import json
import os
import sys
import threading
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import dit  # noqa: E402
from model.diffusion import GaussianDiffusion  # noqa: E402
from model.dit import StreamDiT  # noqa: E402
from model.flops import train_flops  # noqa: E402
from model.precision import fast_dtype  # noqa: E402
from model.presets import get_preset  # noqa: E402
from train.ema import EMA  # noqa: E402
from train.loop import make_optimizer  # noqa: E402
from train.memory import rss_bytes  # noqa: E402

BATCH = {"tiny": 32, "demo": 32, "demo64": 32, "small": 32, "seed": 8}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


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
        return rss_bytes()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(cfg, batch: int, dtype: torch.dtype, device, seconds: float = 2.0) -> float:
    """FLOP/s of the model's own linear shapes (tokens x D by D x D, 2D, 4D and back), best of a few rounds."""
    tokens = batch * (cfg.image_size // cfg.patch_size) ** 2
    D, H = cfg.hidden_size, int(cfg.hidden_size * cfg.mlp_ratio)
    shapes = [(D, D), (D, 2 * D), (D, H), (H, D)]
    mats = [(torch.randn(tokens, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype))
            for k, n in shapes]
    flops = sum(2 * tokens * k * n for k, n in shapes)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sync(device)
        start = time.perf_counter()
        for a, b in mats:
            a @ b
        sync(device)
        best = max(best, flops / (time.perf_counter() - start))
    return best


@contextlib.contextmanager
def attention_of(path: str):
    """The eager path's attention as it was: torch's fused kernel on every device (restored afterwards)."""
    written_out = dit.attention
    if path == "eager":
        dit.attention = torch.nn.functional.scaled_dot_product_attention
    try:
        yield
    finally:
        dit.attention = written_out


def make_step(preset: str, path: str, dtype: torch.dtype, device, batch: int):
    """A closure running one training step of `preset` on fixed random data, as `train` runs it on `path`."""
    torch.manual_seed(0)
    net_cfg, diff_cfg = get_preset(preset)
    net = StreamDiT(net_cfg).to(device).train()
    diffusion = GaussianDiffusion(diff_cfg)
    ema = EMA(net, 50000)
    if path == "default":
        opt = make_optimizer(net, {"lr": 1e-4, "weight_decay": 0.0}, device)
        net.compile_blocks()
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    size = net_cfg.image_size
    x0 = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    cond = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    samples = [0]

    def step():
        with attention_of(path), torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = diffusion.training_losses(net, x0, cond)["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        samples[0] += batch
        ema.update(net, samples[0], batch)

    return step, net_cfg, sum(p.numel() for p in net.parameters())


def measure(preset: str, precision: str, path: str, device, seconds: float) -> dict:
    """One row: warm-up (compilation included), then steps for at least `seconds`, then the peak of the same shapes."""
    batch = BATCH.get(preset, 8)
    dtype = DTYPES[precision]
    step, cfg, params = make_step(preset, path, dtype, device, batch)
    start = time.perf_counter()
    for _ in range(2):  # compiles the forward and the backward
        step()
    sync(device)
    warmup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        steps, start = 0, time.perf_counter()
        while steps < 3 or time.perf_counter() - start < seconds:
            step()
            steps += 1
        sync(device)
        elapsed = time.perf_counter() - start
    peak_mem = torch.cuda.max_memory_allocated() if device.type == "cuda" else rss.peak
    del step
    gc.collect()
    per_s = batch * steps / elapsed
    flops = train_flops(cfg)
    peak = matmul_peak(cfg, batch, dtype, device)
    return dict(preset=preset, precision=precision, device=device.type, batch=batch, path=path,
                samples_per_s=per_s, tflops=per_s * flops / 1e12, peak_tflops=peak / 1e12,
                mfu=per_s * flops / peak, peak_rss_mb=peak_mem / 2**20, params=params,
                gflop_per_sample=flops / 1e9, ms_per_step=1000 * elapsed / steps, warmup_s=warmup, steps=steps)


HEADER = (f"{'preset':<7} {'prec':>4} {'path':>7} {'batch':>5} {'GFLOP/smp':>9} {'warmup s':>8} {'ms/step':>8} "
          f"{'samples/s':>9} {'TFLOP/s':>7} {'peak':>6} {'MFU':>5} {'RSS MB':>6}")


def print_row(r: dict):
    """One table line, printed as soon as the row is measured so a cut-short run still shows what it got."""
    print(f"{r['preset']:<7} {r['precision']:>4} {r['path']:>7} {r['batch']:>5} {r['gflop_per_sample']:>9.2f} "
          f"{r['warmup_s']:>8.1f} {r['ms_per_step']:>8.1f} {r['samples_per_s']:>9.1f} {r['tflops']:>7.3f} "
          f"{r['peak_tflops']:>6.3f} {100 * r['mfu']:>4.0f}% {r['peak_rss_mb']:>6.0f}", flush=True)


def profile(preset: str, precision: str, device, rows: int = 15):
    """torch.profiler tables (self time per op) of a few steps on each path."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for path in ("eager", "default"):
        step, _, _ = make_step(preset, path, DTYPES[precision], device, BATCH.get(preset, 8))
        for _ in range(3):
            step()
        sync(device)
        with torch_profile(activities=activities) as prof:
            for _ in range(5):
                step()
            sync(device)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"\n{preset} {precision} {path}: 5 steps")
        print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="+", default=["demo", "demo64", "small", "seed"])
    parser.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=None,
                        help="default: the one --precision auto picks here (bf16 on CUDA and CPUs with AMX/AVX512-BF16)")
    parser.add_argument("--paths", nargs="+", choices=["eager", "default"], default=["eager", "default"])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per row, after the warm-up")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--profile", default=None, metavar="PRESET", help="print profiler tables for this preset")
    args = parser.parse_args()
    device = torch.device(args.device)
    picked = "bf16" if fast_dtype(device) == torch.bfloat16 else "fp32"
    precisions = args.precisions or [picked]
    print(f"torch {torch.__version__}, {device.type}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.1f}; --precision auto picks "
          f"{picked} here", flush=True)
    if args.profile:
        profile(args.profile, picked, device)
        return
    print(HEADER, flush=True)
    rows = []
    for preset in args.presets:
        for precision in precisions:
            for path in args.paths:
                rows.append(measure(preset, precision, path, device, args.seconds))
                print_row(rows[-1])
    for preset in args.presets:
        by_path = {r["path"]: r for r in rows if r["preset"] == preset and r["precision"] == picked}
        if len(by_path) == 2:
            print(f"{preset} {picked}: default / eager = "
                  f"{by_path['default']['samples_per_s'] / by_path['eager']['samples_per_s']:.2f}x samples/s")
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
