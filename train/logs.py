"""Training logs: running means over a log interval, written as JSON lines (log.jsonl) and to TensorBoard (tb/)."""
import json
import math
import os

import torch

from train.memory import rss_bytes

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


def repair_torn_line(path: str) -> None:
    """Cut a last line left unfinished by a crash mid-write, so appended lines start on a line of their own."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_records(path: str) -> list:
    """The JSON objects of a log.jsonl; a line that does not parse (torn by a crash mid-write) is left out."""
    records = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
    return records


class RunLog:
    """Appends one JSON object per log interval to log.jsonl and mirrors the numbers into TensorBoard; builds the
    interval's record (speed, data wait, memory, skipped data) from what it is told along the way."""

    def __init__(self, run_dir: str):
        from torch.utils.tensorboard import SummaryWriter  # imported here: it pulls in tensorboard (~1 s)

        path = os.path.join(run_dir, "log.jsonl")
        repair_torn_line(path)
        self.file = open(path, "a", encoding="utf-8")
        self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
        self.skipped = {"shards": set(), "samples": set()}  # names of the corrupt data the loader readers skipped
        self.since, self.since_samples, self.waited = 0.0, 0, 0.0

    def begin(self, now: float, samples: int) -> None:
        """The first interval starts here (after the start-up work, which is not training speed)."""
        self.since, self.since_samples = now, samples

    def batch(self, skipped_new: dict, waited_s: float) -> None:
        """A batch arrived after waiting waited_s for data, with the names of data skipped on the way."""
        self.waited += waited_s
        for kind, names in skipped_new.items():
            self.skipped[kind].update(names)

    def interval(self, step: int, stats: dict, now: float, samples: int, time_s: float, **values) -> None:
        """Write the line of the interval since the last one: loss stats, values given (lr, ...), speed, data wait,
        memory, time and skipped-data counts."""
        span = max(now - self.since, 1e-9)
        self.write(step, dict(stats, samples=samples, **values, samples_per_s=(samples - self.since_samples) / span,
                              data_wait=self.waited / span, rss_mb=rss_mb(), time_s=time_s,
                              skipped_shards=len(self.skipped["shards"]), skipped_samples=len(self.skipped["samples"])))
        self.since, self.since_samples, self.waited = now, samples, 0.0

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


def training_summary(run_dir: str, last: int = 10) -> dict:
    """A short account of a run from its log.jsonl: steps, samples, hours, speed, and the loss terms at the end
    (means over the last `last` log lines, by timestep quartile too; `final_losses_log_lines` says how many)."""
    records = [r for r in read_records(os.path.join(run_dir, "log.jsonl")) if "loss" in r]
    if not records:
        return {}
    tail = records[-last:]
    end = {k: round(sum(r[k] for r in tail if k in r) / sum(k in r for r in tail), 6)
           for k in tail[-1] if k.startswith(("loss", "mse", "vb")) and isinstance(tail[-1][k], float)}
    return {"steps": records[-1]["step"], "samples": records[-1]["samples"],
            "training_s": round(records[-1]["time_s"], 1), "training_hours": round(records[-1]["time_s"] / 3600, 2),
            "samples_per_s": round(records[-1]["samples"] / max(records[-1]["time_s"], 1e-9), 2),
            "final_losses": end, "final_losses_log_lines": len(tail)}


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; 0 where unavailable)."""
    return rss_bytes() / 2**20
