"""bench/time_to_quality.py at toy scale: real render, training in chunks, EMA and raw scores, a rerun that resumes."""
import json

from conftest import load_bench


def test_curve_points_with_raw_weights_and_a_rerun_that_adds_nothing(tmp_path, capsys):
    bench = load_bench("time_to_quality")
    args = ["--preset", "tiny", "--minutes", "0.2", "--every", "0.1", "--objects", "8", "--eval-pairs", "2",
            "--eval-steps", "2", "--seed", "3", "--raw", "--data", str(tmp_path / "data"), "--out", str(tmp_path),
            "--name", "t", "--plot", str(tmp_path / "curve.png")]
    bench.main(args)
    stored = json.loads((tmp_path / "t" / "curve.json").read_text())
    curve = stored["curve"]
    assert len(curve) == 2 and curve[0]["samples"] < curve[1]["samples"]
    for point in curve:
        for scores in (point, point["raw"]):
            assert 0 <= scores["mask_iou"] <= 1 and scores["psnr"] > 0
    assert set(stored["baselines"]) == {"copy", "mean"}
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["train"]["seed"] == 3
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert "raw weights" in capsys.readouterr().out

    bench.main(args)   # the budget is spent: the curve is printed again, nothing is trained or added
    assert json.loads((tmp_path / "t" / "curve.json").read_text())["curve"] == curve
