"""Faults around training: bad option values, two runs in one folder, a full disk, a torn log line, corrupt shards."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
import torch
from click.testing import CliRunner

import cli
from conftest import write_shards
from train.weights import export_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--preset", "tiny", "--workers", "0", "--val-fraction", "0", "--sample-every", "0", "--batch-size", "2"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.delenv("DEBUG", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data(tmp_path):
    return write_shards(tmp_path / "d", objects=2, pairs=1, per_shard=2)


def train_cli(*args):
    """`cli.py train ARGS` in this process: (exit code, last stderr line). A traceback-worthy exception fails."""
    result = CliRunner().invoke(cli.cli, ["train", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    lines = result.stderr.strip().splitlines()
    return result.exit_code, lines[-1] if lines else ""


def step_of(run):
    return torch.load(os.path.join(run, "checkpoint", "state.pt"), weights_only=False)["step"]


def records(run):
    with open(os.path.join(run, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("option,value", [("--ckpt-every", "0"), ("--log-every", "0"), ("--lr", "nan"),
                                          ("--grad-clip", "nan"), ("--ema-halflife", "inf"),
                                          ("--max-minutes", "nan"), ("--warmup-steps", "-1")])
def test_bad_numeric_options_are_refused_before_training(data, tmp_path, option, value):
    code, line = train_cli("--data", data, "--out", tmp_path / "run", "--steps", 3, *QUICK, option, value)
    assert code == 1 and line.startswith(f"Error: {option} must be"), line
    assert not os.path.exists(tmp_path / "run" / "checkpoint")


def test_second_run_in_a_folder_says_who_holds_it(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from train.runlock import RunLock; "
                               f"assert RunLock({str(run)!r}).try_acquire() is None; print('held', flush=True); "
                               "time.sleep(120)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, line = train_cli("--data", data, "--out", run, "--steps", 2, *QUICK)
        assert code == 1 and "in use by another train run" in line and f"pid {holder.pid} on " in line, line
        assert not os.path.exists(run / "log.jsonl")   # nothing of the second run was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, line = train_cli("--data", data, "--out", run, "--steps", 2, *QUICK)   # the lock died with its holder
    assert code == 0, line
    assert step_of(run) == 2


def fill(path, chunk=1 << 16):
    """Write zeros into `path` until the disk is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * chunk)
                f.flush()
        except OSError:
            pass


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (a tiny-preset checkpoint is ~4.7 MiB); skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_is_one_line_and_resume_works_after(data, small_disk):
    run = small_disk / "run"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (8 << 20))   # room for one checkpoint, not for its replacement beside it
    code, line = train_cli("--data", data, "--out", run, "--steps", 6, "--ckpt-every", 2, "--log-every", 1, *QUICK)
    assert code == 1 and "no space left" in line.lower(), line
    assert step_of(run) == 2                                  # the last complete checkpoint is kept
    assert not [n for n in os.listdir(run) if n.startswith((".checkpoint-", "config.json.tmp"))]

    # A save killed mid-write leaves its temporary folder, and the disk is full: --resume must clear it first.
    filler.unlink()
    os.makedirs(run / ".checkpoint-killed")
    (run / ".checkpoint-killed" / "model.safetensors").write_bytes(b"\0" * (6 << 20))
    fill(small_disk / "more")
    code, line = train_cli("--out", run, "--resume", "--steps", 4, "--workers", 0)
    assert code == 0, line
    assert step_of(run) == 4 and not os.path.exists(run / ".checkpoint-killed")


def test_torn_log_line_export_and_resume(data, tmp_path):
    run = tmp_path / "run"
    code, line = train_cli("--data", data, "--out", run, "--steps", 2, "--log-every", 1, *QUICK)
    assert code == 0, line
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.5, "sam')           # a crash mid-write
    out = tmp_path / "exports" / "w"
    export_weights(str(run), str(out))
    assert json.loads((out / "training.json").read_text())["steps"] == 2
    assert not [n for n in os.listdir(tmp_path / "exports") if n.startswith(".weights-")]
    code, line = train_cli("--out", run, "--resume", "--steps", 4, "--workers", 0)
    assert code == 0, line
    assert [r["step"] for r in records(run)] == [1, 2, 3, 4]   # every line parses: the torn one was cut


def test_a_failed_export_leaves_no_temporary_folder(data, tmp_path):
    run = tmp_path / "run"
    assert train_cli("--data", data, "--out", run, "--steps", 1, *QUICK)[0] == 0
    (run / "checkpoint" / "ema.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        export_weights(str(run), str(tmp_path / "exports" / "w"))
    assert os.listdir(tmp_path / "exports") == []


def test_a_corrupt_shard_is_counted_once_over_many_epochs(data, tmp_path):
    (tmp_path / "d" / f"shard-bad-{uuid.uuid4().hex}.tar").write_bytes(b"not a tar" * 100)
    code, line = train_cli("--data", data, "--out", tmp_path / "run", "--steps", 6, "--log-every", 6, *QUICK)
    assert code == 0, line   # 2 pairs, batch 2: six epochs, each meeting the bad shard
    assert records(tmp_path / "run")[-1]["skipped_shards"] == 1


def test_sample_on_a_full_disk_is_one_line_and_leaves_no_temporary(small_disk, tmp_path):
    import numpy as np
    from PIL import Image
    from conftest import make_weights
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(photo)
    out = small_disk / "out"
    out.mkdir()
    fill(small_disk / "filler")
    result = CliRunner().invoke(cli.cli, ["sample", "--checkpoint", str(make_weights(tmp_path / "w")), str(photo),
                                          "--out", str(out), "--steps", "1"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: {out / 'photo_input.png'}: No space left on device"
    assert os.listdir(out) == []
