"""evaluate: report shape, metric ranges, baselines, the CSV and grid; metric definitions at their edges."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from datasets.split import is_val
from conftest import make_weights, run_cli, write_box_shards
from train.evaluate import GRID_ROWS, evaluate
from train.grid import CELL_PX, GAP, LABEL_PX
from train.metrics import PSNR_CAP_DB, foreground_mask, mask_iou, psnr, ssim
from train.defaults import DEFAULT_SAMPLER

WHITE = (255, 255, 255)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("weights"), val_fraction=0.5)


def check_shape(report):
    assert set(report) >= {"model", "baselines", "n", "checkpoint", "sampler", "steps"}
    assert set(report["baselines"]) == {"copy", "mean"}
    for m in (report["model"], report["baselines"]["copy"], report["baselines"]["mean"]):
        assert set(m) == {"psnr", "ssim", "mask_iou"}
        assert 0 < m["psnr"] <= PSNR_CAP_DB and 0 <= m["ssim"] <= 1 and 0 <= m["mask_iou"] <= 1


def test_evaluate_val_split_report_csv_grid(weights, tmp_path):
    data = write_box_shards(tmp_path / "data", objects=10, pairs=2)
    val_uids = [f"obj{o:03d}" for o in range(10) if is_val(f"obj{o:03d}", 0.5)]
    assert 0 < len(val_uids) < 10
    report = evaluate(weights, data, tmp_path / "r" / "eval.json", steps=2, batch_size=3)
    check_shape(report)
    assert report["n"] == 2 * len(val_uids) and report["sampler"] == DEFAULT_SAMPLER and report["steps"] == 2
    assert "train split" in report["mean_from"]
    # the copy baseline misses the moved box: far from perfect, but a real score
    assert report["baselines"]["copy"]["psnr"] < 30 and report["baselines"]["copy"]["mask_iou"] < 0.5
    assert json.loads((tmp_path / "r" / "eval.json").read_text()) == report
    rows = list(csv.DictReader(open(tmp_path / "r" / "eval.csv")))
    assert len(rows) == report["n"] and {r["uid"] for r in rows} == set(val_uids)
    assert np.isclose(np.mean([float(r["copy_psnr"]) for r in rows]), report["baselines"]["copy"]["psnr"], atol=1e-3)
    shown = min(GRID_ROWS, report["n"])     # condition | generated | target | mean, one row per pair
    grid = Image.open(tmp_path / "r" / "eval.png")
    assert grid.size == (4 * CELL_PX + 5 * GAP, LABEL_PX + shown * CELL_PX + (shown + 1) * GAP)   # 128 px cells
    labels = np.asarray(grid.convert("L"))[:LABEL_PX]                  # white labels on the black label row
    assert all((labels[:, GAP + c * (CELL_PX + GAP):(c + 1) * (CELL_PX + GAP)] > 128).sum() > 20 for c in range(4))

    again = evaluate(weights, data, tmp_path / "r2" / "eval.json", steps=2, batch_size=3)
    assert again["model"] == report["model"]                # seeded: the same numbers twice


def test_copy_baseline_is_perfect_when_target_is_source(weights, tmp_path):
    data = write_box_shards(tmp_path / "same", objects=3, pairs=2, same=True)
    report = evaluate(weights, data, tmp_path / "eval.json", split="all", steps=2, limit=4)
    check_shape(report)
    assert report["n"] == 4
    assert report["baselines"]["copy"] == pytest.approx({"psnr": PSNR_CAP_DB, "ssim": 1.0, "mask_iou": 1.0})


def test_evaluate_cli_prints_table_and_rejects_empty_split(weights, tmp_path):
    data = write_box_shards(tmp_path / "data", objects=6, pairs=1)
    r = run_cli("evaluate", "--checkpoint", weights, "--data", data, "--out", tmp_path / "e.json", "--steps", 2)
    assert r.returncode == 0, r.stderr
    assert "copy baseline" in r.stdout and "mean baseline" in r.stdout and "PSNR" in r.stdout
    assert json.loads((tmp_path / "e.json").read_text())["n"] >= 1
    r = run_cli("evaluate", "--checkpoint", weights, "--data", tmp_path / "missing", "--out", tmp_path / "x.json")
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("Error: ")


def test_evaluate_scores_several_sources_as_one_set(weights, tmp_path):
    moved = write_box_shards(tmp_path / "moved", objects=3, pairs=2)
    same = write_box_shards(tmp_path / "same", objects=2, pairs=2, same=True)
    r = run_cli("evaluate", "--checkpoint", weights, "--data", moved, "--data", same, "--split", "all",
                "--out", tmp_path / "both.json", "--steps", 2)
    assert r.returncode == 0, r.stderr
    both = json.loads((tmp_path / "both.json").read_text())
    parts = [evaluate(weights, d, tmp_path / f"{i}.json", split="all", steps=2) for i, d in enumerate((moved, same))]
    assert both["n"] == 10 == sum(part["n"] for part in parts)
    assert both["data"] == f"{moved}, {same}"
    for m in ("psnr", "ssim", "mask_iou"):   # the pair-weighted mean of the two parts
        assert both["baselines"]["copy"][m] == pytest.approx((6 * parts[0]["baselines"]["copy"][m]
                                                              + 4 * parts[1]["baselines"]["copy"][m]) / 10)


def test_metric_edges():
    a = np.random.default_rng(0).random((16, 16, 3))
    assert psnr(a, a) == PSNR_CAP_DB and ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, np.clip(a + 0.1, 0, 1)) < 25
    assert psnr(np.zeros((4, 4, 3)), np.ones((4, 4, 3))) == 0.0
    assert 0 <= ssim(a, 1 - a) <= 1 and ssim(a[:5, :5], a[:5, :5]) == pytest.approx(1.0)   # images under 7 px
    blank = np.ones((8, 8, 3))
    assert mask_iou(blank, blank, WHITE) == 1.0        # two empty masks agree
    box = blank.copy()
    box[2:6, 2:4] = 0.2
    shifted = blank.copy()
    shifted[2:6, 3:5] = 0.2
    assert mask_iou(box, shifted, WHITE) == pytest.approx(4 / 12)
    assert mask_iou(box, blank, WHITE) == 0.0
    faint = blank - 0.05                                  # within the threshold: still background
    assert not foreground_mask(faint, WHITE).any() and foreground_mask(box, WHITE).sum() == 8
