"""The shipped reference model: files match SHA256SUMS, it loads, it is the default, and it turns a view."""
import hashlib
import json

import torch

from train.weights import DEFAULT_WEIGHTS, WEIGHTS_DIR, load_for_inference, parse_sha256sums, resolve_checkpoint

REFERENCE = WEIGHTS_DIR / DEFAULT_WEIGHTS


def test_reference_files_match_their_checksums_and_fit_25_mb():
    sums = parse_sha256sums((REFERENCE / "SHA256SUMS").read_text())
    assert {"model.safetensors", "config.json", "training.json"} <= set(sums)
    for name, digest in sums.items():
        assert hashlib.sha256((REFERENCE / name).read_bytes()).hexdigest() == digest, name
    assert sum(p.stat().st_size for p in REFERENCE.iterdir()) <= 25 * 2**20   # 25 MiB, as `du -sm` counts


def test_reference_is_the_default_and_loads():
    assert resolve_checkpoint(None) == REFERENCE
    net, diffusion, config = load_for_inference(REFERENCE)
    size = config["model"]["image_size"]
    assert config["train"]["samples"] > 100_000 and json.loads((REFERENCE / "training.json").read_text())["steps"] > 0
    cond = torch.linspace(-1, 1, 3 * size * size).reshape(1, 3, size, size)
    out = diffusion.sample(net, cond, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, size, size) and torch.isfinite(out).all() and out.abs().max() <= 1
    assert out.std() > 0.01   # a trained model draws something, not a flat field


def test_reference_report_is_the_shared_shape():
    report = json.loads((REFERENCE / "eval.json").read_text())
    assert set(report) >= {"model", "baselines", "n", "checkpoint", "sampler", "steps"} and report["n"] >= 100
    for scores in (report["model"], *report["baselines"].values()):
        assert 0 <= scores["ssim"] <= 1 and 0 <= scores["mask_iou"] <= 1 and scores["psnr"] > 0
