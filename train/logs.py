"""Training logs: running means over a log interval, written as JSON lines (log.jsonl) and to TensorBoard (tb/)."""
import json
import math
import os
from collections import defaultdict

# TensorBoard groups tags by the part before the slash.
TB_GROUPS = {"loss": "train", "mse": "train", "vb": "train", "grad_norm": "train", "lr": "train",
             "samples_per_s": "speed", "data_wait": "speed", "rss_mb": "speed"}


class Meter:
    """Sums of scalars since the last log line; values missing in some steps are averaged over the steps that have them."""

    def __init__(self):
        self.sums, self.counts = defaultdict(float), defaultdict(int)

    def add(self, values: dict) -> None:
        """Add one step's scalars (non-finite values are counted as they are, so a divergence shows)."""
        for key, value in values.items():
            self.sums[key] += float(value)
            self.counts[key] += 1

    def means(self) -> dict:
        """Averages since the last reset, then reset."""
        means = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums.clear()
        self.counts.clear()
        return means


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
