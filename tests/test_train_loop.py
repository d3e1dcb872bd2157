"""Training: the loss falls on a few pairs, resume matches a straight run, time budget, signals, config guard."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_shards
from train.loop import train, what_now

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(preset="tiny", workers=0, val_fraction=0.0, shuffle_buffer=0, sample_every=0, progress=False)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two spinning OpenMP threads per process run 5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_what_now_logs_every_interval_and_leaves_the_last_steps_preview_and_checkpoint_to_the_end():
    t = {"steps": 10, "log_every": 4, "sample_every": 2}
    as_tuple = lambda todo: (todo.log, todo.preview, todo.save, todo.stop)   # noqa: E731
    assert as_tuple(what_now(t, 3, False, False)) == (False, False, False, False)
    assert as_tuple(what_now(t, 4, False, True)) == (True, True, True, False)
    assert as_tuple(what_now(t, 10, False, True)) == (True, False, False, False)   # the run's end saves and previews
    assert as_tuple(what_now(t, 5, True, True)) == (True, False, False, True)      # so does a stop, after its log line
    assert not what_now(dict(t, sample_every=0), 4, False, False).preview         # 0: grids only at the end


def log_lines(run):
    with open(os.path.join(run, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_overfits_a_few_pairs(tmp_path):
    data = write_shards(tmp_path / "d", objects=2, pairs=1, per_shard=2)
    summary = train(data, tmp_path / "run", steps=100, batch_size=8, lr=3e-3, warmup_steps=10, log_every=10, **FAST)
    losses = [r["loss"] for r in log_lines(tmp_path / "run")]
    assert summary["step"] == 100 and len(losses) == 10
    assert losses[-1] < 0.5 * losses[0], losses  # two memorisable pairs: the loss at least halves
    grids = os.listdir(tmp_path / "run" / "samples")
    assert grids == ["step_0000100.png"]


def weights(run, name):
    return load_file(os.path.join(run, "checkpoint", f"{name}.safetensors"))


def test_resume_matches_a_straight_run(tmp_path):
    # One shard of 4 pairs, batch 4, no shuffling: every batch holds the same pairs in the same order, whichever
    # process reads it, so the only state that carries over a stop is what the checkpoint saved.
    data = write_shards(tmp_path / "d", objects=4, pairs=1, per_shard=4)
    common = dict(batch_size=4, warmup_steps=3, ema_halflife=40, log_every=2, **FAST)
    train(data, tmp_path / "straight", steps=8, **common)
    train(data, tmp_path / "split", steps=4, **common)
    summary = train(None, tmp_path / "split", steps=8, resume=True, progress=False)
    assert summary["step"] == 8 and summary["samples"] == 32
    # Same ops on the same inputs in one process give bit-identical floats; the 1e-6 slack only allows for a
    # kernel choosing another summation order, far below a one-step change (lr 1e-3 moves weights by ~1e-3).
    for name in ("model", "ema"):
        a, b = weights(tmp_path / "straight", name), weights(tmp_path / "split", name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-6)
    straight, split = log_lines(tmp_path / "straight"), log_lines(tmp_path / "split")
    assert [r["step"] for r in split] == [2, 4, 6, 8]
    assert split[-1]["loss"] == pytest.approx(straight[-1]["loss"], abs=1e-6)
    state = torch.load(tmp_path / "split" / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 8 and "exp_avg" in state["optimizer"]["state"][0]


def test_time_budget_and_existing_run_guard(tmp_path):
    data = write_shards(tmp_path / "d", objects=2, pairs=1, per_shard=2)
    summary = train(data, tmp_path / "run", steps=100000, batch_size=2, max_minutes=0.02, **FAST)
    assert summary["stopped"] == "time budget" and 0 < summary["step"] < 100000
    assert os.path.isfile(tmp_path / "run" / "checkpoint" / "model.safetensors")
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(data, tmp_path / "run", steps=5, **FAST)
    with pytest.raises(ValueError, match="differs from the run"):
        train(data, tmp_path / "run", steps=5, resume=True, **dict(FAST, preset="demo"))
    with pytest.raises(ValueError, match="differs from the run"):
        train(data, tmp_path / "run", steps=5, resume=True, overrides=["depth=3"], **FAST)
    with pytest.raises(ValueError, match="unknown model/diffusion option"):
        train(data, tmp_path / "other", steps=5, overrides=["depht=3"], **FAST)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["val_fraction"] == 0.0 and config["data"]["background"] == "white"
    assert config["model"]["hidden_size"] and config["diffusion"]["prediction"]


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, **kw)


def test_cli_errors_are_one_line(tmp_path):
    r = run_cli("train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "run"), "--steps", "2")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: no such shard or folder")


def test_sigterm_saves_a_checkpoint_and_resume_continues(tmp_path):
    data = write_shards(tmp_path / "d", objects=2, pairs=1, per_shard=2)
    run = str(tmp_path / "run")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "cli.py", "train", "--data", data, "--out", run, "--steps", "100000",
                             "--batch-size", "2", "--workers", "1", "--log-every", "1", "--sample-every", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait for the first logged step: log.jsonl is created before the signal handler is installed, so its mere
    # existence does not mean training has started (a SIGTERM then kills the process, with nothing to save).
    log = os.path.join(run, "log.jsonl")
    deadline = time.time() + 60
    while not (os.path.exists(log) and os.path.getsize(log) > 0) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "interrupted; continue with --resume" in out
    step = torch.load(os.path.join(run, "checkpoint", "state.pt"), weights_only=False)["step"]
    assert 1 <= step < 100000
    r = run_cli("train", "--out", run, "--resume", "--steps", str(step + 2), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"steps {step} -> {step + 2}" in r.stdout
