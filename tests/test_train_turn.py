"""The turn is data: a run records its shards' turn, the export carries it, sample's turntable steps by it; and a
run says what it does (start-up line, a progress bar that ends with the time budget, --quiet, --device, --version)."""
import json
import re

import torch

from conftest import write_shards
from conftest import run_cli
from train.loop import train


def test_a_model_trained_on_45_degree_shards_turns_by_45(tmp_path):
    r = run_cli("render", "procedural", "--count", 4, "--size", 32, "--pairs-per-object", 1, "--delta-azimuth", 45,
                "--workers", 1, "--out", tmp_path / "d45")
    assert r.returncode == 0, r.stderr
    r = run_cli("train", "--data", tmp_path / "d45", "--out", tmp_path / "run", "--preset", "tiny", "--steps", 2,
                "--batch-size", 2, "--workers", 0, "--sample-every", 0, "--val-fraction", 0, "--device", "cpu",
                "--precision", "fp32",
                "--quiet")
    assert r.returncode == 0, r.stderr
    start = [line for line in r.stderr.splitlines() if line.startswith("train: tiny preset")]
    assert len(start) == 1 and "on cpu, fp32, eager;" in start[0] and "train 4 objects / 4 pairs, val 0 objects / 0 pairs" \
        in start[0] and "turn 45 degrees" in start[0] and str(tmp_path / "run") in start[0], r.stderr
    assert re.search(r"\d+\.\d\dM parameters", start[0])
    assert "it/s" not in r.stderr and "step/s" not in r.stderr               # --quiet: no progress bar
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["turns_deg"] == [45.0]
    r = run_cli("export", tmp_path / "run", "--out", tmp_path / "w")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "w" / "config.json").read_text())["data"]["turns_deg"] == [45.0]

    (tmp_path / "in").mkdir()
    from PIL import Image
    rgba = torch.zeros(40, 40, 4, dtype=torch.uint8)
    rgba[10:30, 10:30] = torch.tensor([200, 60, 30, 255], dtype=torch.uint8)
    Image.fromarray(rgba.numpy()).save(tmp_path / "in" / "box.png")
    r = run_cli("sample", "--checkpoint", tmp_path / "w", tmp_path / "in" / "box.png", "--out", tmp_path / "tt",
                "--steps", 2, "--turntable", 8)
    assert r.returncode == 0, r.stderr
    assert "8 views 45 degrees apart, clockwise seen from above (0 to 315 degrees)" in r.stderr
    r = run_cli("sample", "--checkpoint", tmp_path / "w", tmp_path / "in" / "box.png", "--out", tmp_path / "one",
                "--steps", 2)
    assert "the object turned 45 degrees clockwise seen from above" in r.stderr
    assert re.search(r"in \d+\.\d s \(\d+\.\d s sampling\)", r.stderr)


def test_progress_bar_ends_with_the_time_budget(tmp_path, capsys):
    data = write_shards(tmp_path / "d", objects=2, pairs=1, per_shard=2)
    torch.set_num_threads(1)
    summary = train(data, tmp_path / "run", preset="tiny", steps=1_000_000, batch_size=2, max_minutes=0.03,
                    workers=0, val_fraction=0.0, sample_every=0, log_every=1000)
    err = capsys.readouterr().err
    totals = [int(t) for t in re.findall(r"\d+/(\d+) \[", err)]
    assert summary["stopped"] == "time budget" and totals
    # the bar's total is the steps the budget allows (not the 1,000,000 --steps): within a factor of 2 at the end
    assert summary["step"] / 2 <= totals[-1] <= 2 * summary["step"], (totals[-3:], summary["step"])
    resumed = train(None, tmp_path / "run", resume=True, max_minutes=0.03)   # also after --resume
    totals = [int(t) for t in re.findall(r"\d+/(\d+) \[", capsys.readouterr().err)]
    added = resumed["step"] - summary["step"]
    assert added > 0 and summary["step"] + added / 2 <= totals[-1] <= summary["step"] + 2 * added, totals[-3:]


def test_version_and_device_errors():
    r = run_cli("--version")
    assert r.returncode == 0 and re.fullmatch(r"dit-nvs \d+\.\d+\.\d+", r.stdout.strip())
    r = run_cli("train", "--data", "x", "--out", "y", "--device", "tpu")
    assert r.returncode == 1 and r.stderr.strip().startswith("Error: --device 'tpu'")


def test_mixed_turns_are_recorded_and_a_fixed_turn_run_is_warned(tmp_path):
    import json as _json

    import webdataset as wds

    from model.dit import StreamDiT
    from model.presets import get_preset
    from conftest import sample_record
    from train.config import read_turns, turn_deg
    from train.startup import startup_line
    sixty = write_shards(tmp_path / "a", objects=2, pairs=1, per_shard=2)
    (tmp_path / "b").mkdir()
    with wds.TarWriter(str(tmp_path / "b" / "s.tar")) as sink:
        record = sample_record("other", 0, 32, 0)
        record["json"] = _json.dumps(dict(_json.loads(record["json"]), delta_azimuth_deg=-30.0)).encode()
        sink.write(record)
    assert read_turns([sixty, str(tmp_path / "b")]) == [-30.0, 60.0]
    assert turn_deg({"data": {}}) == 60.0                                  # weights from before the turn was recorded
    config = {"train": {"preset": "tiny", "precision": "fp32"}, "model": {"camera_dim": 0},
              "data": {"shards": [sixty, str(tmp_path / "b")], "val_fraction": 0.0, "turns_deg": [-30.0, 60.0]}}
    line = startup_line(config, StreamDiT(get_preset("tiny")[0]), torch.device("cpu"), torch.float32, "r", 1)
    assert "train 3 objects / 3 pairs" in line and "turn -30, 60 degrees (warning: a fixed-turn model" in line
