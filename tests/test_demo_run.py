"""The demo end to end at toy scale (real render, real training, evaluation, turntable), and its resume on rerun."""
import json

import pytest

from conftest import make_weights
from train import demo, weights


@pytest.mark.slow
def test_demo_small_then_rerun_skips_finished_stages(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path / "weights")
    reference = make_weights(tmp_path / "weights" / "reference")
    monkeypatch.setenv("DEMO_MINUTES", "0.1")
    args = ["--out", str(tmp_path / "demo"), "--objects", "24", "--pairs-per-object", "1", "--preset", "tiny",
            "--eval-steps", "2", "--eval-limit", "6", "--val-fraction", "0.25"]
    demo.main(args)
    out = tmp_path / "demo"
    report, ref_report = (json.loads((out / name).read_text()) for name in ("eval.json", "eval_reference.json"))
    for r in (report, ref_report):
        assert set(r) >= {"model", "baselines", "n", "checkpoint", "sampler", "steps"} and 1 <= r["n"] <= 6
        assert 0 <= r["model"]["mask_iou"] <= 1 and r["val_fraction"] == 0.25
    assert ref_report["baselines"]["copy"] == report["baselines"]["copy"]   # the same validation pairs
    assert ref_report["checkpoint"] == str(reference)
    assert json.loads((out / "run" / "config.json").read_text())["data"]["val_fraction"] == 0.25
    assert (out / "turntable" / "input_turntable.gif").is_file() and (out / "eval.png").is_file()
    printed = capsys.readouterr()
    assert "demo model" in printed.out and "shipped weights" in printed.out and "input_turntable" in printed.out

    demo.main(args)          # everything exists: the stages are skipped, not redone
    printed = capsys.readouterr()
    assert printed.err.count("done already") == 4
    assert json.loads((out / "eval.json").read_text()) == report
