"""Pick bf16 autocast only where the hardware computes it fast; fp32 otherwise."""

import contextlib

import torch


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16 (per /proc/cpuinfo); without them bf16 matmul is far slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def fast_dtype(device) -> torch.dtype:
    """torch.bfloat16 on CUDA with bf16 support or a CPU with bf16 units, else torch.float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return torch.float32


def autocast(device, dtype: torch.dtype | None = None):
    """Autocast context for `dtype` (default: fast_dtype(device)); a no-op context for fp32."""
    device = torch.device(device)
    dtype = fast_dtype(device) if dtype is None else dtype
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
