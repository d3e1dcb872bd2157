"""The line a run prints when it starts: device, precision and compilation actually used, parameters, data split,
output folder."""
import os
import tarfile

import torch

from datasets.split import is_val
from datasets.stream import URL_PATTERN, resolve_shards
from model.precision import cpu_has_fast_bf16
from render.shards import uid_of_key


def count_split(spec, val_fraction: float):
    """{"train"/"val": (objects, pairs)} from the tar headers of local shards (no image is read); None when any
    shard is remote (counting would download it)."""
    shards = resolve_shards(spec)
    if any(URL_PATTERN.match(s) for s in shards):
        return None
    pairs = {}
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    key, _, field = member.name.rpartition("/")[2].partition(".")
                    if field == "json":
                        uid = uid_of_key(key)
                        pairs[uid] = pairs.get(uid, 0) + 1
        except (OSError, tarfile.TarError):
            continue   # the loader skips (and reports) a broken shard too
    split = {"train": [0, 0], "val": [0, 0]}
    for uid, n in pairs.items():
        side = split["val" if is_val(uid, val_fraction) else "train"]
        side[0], side[1] = side[0] + 1, side[1] + n
    return {k: tuple(v) for k, v in split.items()}


def precision_text(dtype: torch.dtype, precision: str, device: torch.device) -> str:
    """The precision used, and why when `auto` chose it."""
    name = "bf16" if dtype == torch.bfloat16 else "fp32"
    if precision != "auto":
        return name
    if device.type == "cuda":
        return f"{name} (auto: CUDA{' with' if name == 'bf16' else ' without'} bf16)"
    return f"{name} (auto: this CPU {'has' if cpu_has_fast_bf16() else 'has no'} AMX / AVX512-BF16)"


def startup_line(config: dict, net, device, dtype, out: str, world_size: int, compiled: bool = False) -> str:
    """One line saying what the run is about to do."""
    t, data = config["train"], config["data"]
    params = sum(p.numel() for p in net.parameters())
    counts = count_split(data["shards"], data["val_fraction"])
    split = ("remote shards (not counted)" if counts is None else
             f"train {counts['train'][0]} objects / {counts['train'][1]} pairs, "
             f"val {counts['val'][0]} objects / {counts['val'][1]} pairs")
    where = str(device) if world_size == 1 else f"{world_size} x {device.type}"
    turns = ", ".join(f"{d:g}" for d in data.get("turns_deg", []))
    mixed = "" if config["model"].get("camera_dim") or len(data.get("turns_deg", [])) < 2 else \
        " (warning: a fixed-turn model learns one turn; these data mix several: --set camera_dim=4)"
    return (f"train: {t['preset']} preset, {params / 1e6:.2f}M parameters, on {where}, "
            f"{precision_text(dtype, t['precision'], device)}, "
            f"{'blocks compiled (the first steps wait for it)' if compiled else 'eager'}; {split}, "
            f"turn {turns} degrees{mixed}; "
            f"-> {os.path.abspath(out)}")
