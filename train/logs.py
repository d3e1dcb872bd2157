"""Training logs: running means over a log interval, written as JSON lines (log.jsonl) and to TensorBoard (tb/)."""
import json
import math
import os

import torch

# TensorBoard groups tags by the part before the slash.
TB_GROUPS = {"loss": "train", "mse": "train", "vb": "train", "grad_norm": "train", "lr": "train",
             "samples_per_s": "speed", "data_wait": "speed", "rss_mb": "speed"}


def summarize(window: list, quartiles) -> dict:
    """Means of the per-sample loss terms and grad norms gathered since the last log line (one device sync), plus
    quartiles(terms) by timestep range; window holds dicts of detached tensors ("loss", "mse", "vb", "t", "grad_norm")."""
    terms = {k: torch.cat([w[k].reshape(-1) for w in window]).float() for k in window[0]}
    stats = {k: terms[k].mean().item() for k in ("loss", "mse", "vb", "grad_norm")}
    terms["t"] = terms["t"].long()
    stats.update(quartiles(terms))
    return stats


class RunLog:
    """Appends one JSON object per log interval to log.jsonl and mirrors the numbers into TensorBoard."""

    def __init__(self, run_dir: str):
        from torch.utils.tensorboard import SummaryWriter  # imported here: it pulls in tensorboard (~1 s)

        self.file = open(os.path.join(run_dir, "log.jsonl"), "a", encoding="utf-8")
        self.tb = SummaryWriter(os.path.join(run_dir, "tb"))

    def write(self, step: int, values: dict) -> None:
        """Log scalars at a step (the JSON line also carries any non-numeric fields given)."""
        record = {"step": step}
        record.update({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items()})
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                group = TB_GROUPS.get(key, "quartiles" if key[-3:-1] == "_q" else "run")
                self.tb.add_scalar(f"{group}/{key}", value, step)

    def close(self) -> None:
        """Flush and close both outputs."""
        self.file.close()
        self.tb.close()


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0
