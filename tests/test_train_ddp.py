"""Distributed data parallel on CPU: two processes under torchrun (gloo) train one model and write one checkpoint."""
import json
import os
import subprocess
import sys

import torch

from conftest import write_shards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_cpu_processes_train_together(tmp_path):
    data = write_shards(tmp_path / "d", objects=8, pairs=1, per_shard=2)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "cli.py", "train",
           "--data", data, "--out", str(run), "--preset", "tiny", "--steps", "4", "--batch-size", "4",
           "--workers", "1", "--log-every", "2", "--sample-every", "0", "--val-fraction", "0"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("train: steps 0 -> 4") == 1  # only rank 0 reports
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=False)
    assert state["world_size"] == 2 and state["step"] == 4 and state["samples"] == 16  # global batch 4 = 2 x 2
    rank0, rank1 = state["rng"]  # each rank's generator is saved, and they differ: different noise per rank
    assert not torch.equal(rank0["torch"], rank1["torch"])
    logs = [json.loads(line) for line in open(run / "log.jsonl")]
    assert [entry["step"] for entry in logs] == [2, 4]
