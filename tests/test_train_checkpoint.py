"""Checkpoints: inference loading of run and weights folders, export with checksums, a crash mid-swap, EMA maths."""
import hashlib
import json
import os
import shutil

import pytest
import torch

from conftest import write_shards
from conftest import run_cli
from train.checkpoint import checkpoint_dir
from train.weights import export_weights, load_for_inference
from train.ema import EMA
from train.loop import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-step tiny run."""
    tmp = tmp_path_factory.mktemp("ckpt")
    data = write_shards(tmp / "d", objects=2, pairs=1, per_shard=2)
    torch.set_num_threads(1)  # a shared 2-core machine: one spinning OpenMP thread per process, not two
    train(data, tmp / "run", preset="tiny", steps=3, batch_size=2, workers=0, sample_every=0, progress=False)
    return tmp / "run"


def test_load_run_and_exported_weights(run, tmp_path):
    net, diffusion, config = load_for_inference(run)
    assert not net.training and config["data"]["background"] == "white" and diffusion.num_steps > 0
    out = export_weights(run, tmp_path / "weights")
    assert sorted(os.listdir(out)) == ["SHA256SUMS", "config.json", "model.safetensors", "training.json"]
    for line in open(os.path.join(out, "SHA256SUMS")):
        digest, name = line.split()
        assert hashlib.sha256(open(os.path.join(out, name), "rb").read()).hexdigest() == digest
    exported = json.load(open(os.path.join(out, "config.json")))
    assert exported["train"]["step"] == 3 and "shards" not in exported["data"]
    summary = json.load(open(os.path.join(out, "training.json")))
    assert summary["steps"] == 3 and summary["samples"] == 6 and summary["training_s"] > 0
    assert summary["final_losses_log_lines"] >= 1 and summary["final_losses"]["loss"] > 0
    net2, _, _ = load_for_inference(out)
    for (k, a), (_, b) in zip(net.state_dict().items(), net2.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.zeros(1, 3, 32, 32)
    assert net2(x, torch.tensor([10]), x).shape == (1, 6, 32, 32)
    with pytest.raises(FileExistsError):
        export_weights(run, out)
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        load_for_inference(tmp_path)


def test_raw_weights_load_from_a_run_folder_only(run, tmp_path):
    ema_net = load_for_inference(run)[0]
    raw_net = load_for_inference(run, weights="raw")[0]
    # after 3 steps of warm-up the EMA trails the raw weights, so the two differ somewhere
    assert any(not torch.equal(a, b) for a, b in zip(ema_net.state_dict().values(), raw_net.state_dict().values()))
    out = export_weights(run, tmp_path / "weights")
    with pytest.raises(ValueError, match="raw training weights"):
        load_for_inference(out, weights="raw")
    with pytest.raises(ValueError, match="'ema' or 'raw'"):
        load_for_inference(run, weights="best")


def test_export_command_writes_a_folder_sample_takes(run, tmp_path):
    done = run_cli("export", run, "--out", tmp_path / "w")
    assert done.returncode == 0 and done.stdout.strip() == str(tmp_path / "w")
    assert load_for_inference(tmp_path / "w")[2]["train"]["step"] == 3
    again = run_cli("export", run, "--out", tmp_path / "w")
    assert again.returncode == 1 and again.stderr.startswith("Error: ") and "Traceback" not in again.stderr


def test_a_crash_between_renames_keeps_the_previous_checkpoint(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    os.replace(copy / "checkpoint", copy / "checkpoint.old")  # killed after moving the old one aside
    (copy / ".checkpoint-abc").mkdir()  # and a half-written new one
    assert checkpoint_dir(copy) == str(copy / "checkpoint.old")
    load_for_inference(copy)
    summary = train(None, copy, steps=4, resume=True, progress=False)
    assert summary["step"] == 4 and checkpoint_dir(copy) == str(copy / "checkpoint")
    assert not (copy / "checkpoint.old").exists() and not (copy / ".checkpoint-abc").exists()


def test_a_run_from_before_an_option_existed_resumes_with_its_old_behaviour(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["train"]["high_noise_share"]      # added after such runs were started
    (copy / "config.json").write_text(json.dumps(config))
    summary = train(None, copy, steps=4, resume=True, progress=False)
    assert summary["step"] == 4
    assert json.loads((copy / "config.json").read_text())["train"]["high_noise_share"] == 0.0


def test_ema_half_life_and_warm_up():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, halflife_samples=1000, rampup=0.1)
    assert ema.decay(samples_seen=100_000, batch=1000) == pytest.approx(0.5)  # one half-life per 1000 samples
    assert ema.decay(samples_seen=500, batch=50) == pytest.approx(0.5)  # warm-up: half-life 0.1 x 500 = 50 samples
    assert EMA(net, 1000, rampup=0).decay(10, 10) == pytest.approx(0.5 ** 0.01)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for seen in range(1000, 11000, 1000):
        ema.update(net, seen, 1000)
    assert torch.allclose(ema.model.weight, torch.ones(2, 2), atol=2e-3)  # 10 half-lives: within 1/1024


def test_init_from_starts_a_new_run_from_the_given_weights(run, tmp_path):
    source, _, _ = load_for_inference(run)
    data = write_shards(tmp_path / "d", objects=2, pairs=1, per_shard=2)
    common = dict(preset="tiny", steps=1, batch_size=2, workers=0, sample_every=0, progress=False, seed=1,
                  lr=1e-12, warmup_steps=0)
    train(data, tmp_path / "tuned", init_from=str(run), **common)
    train(data, tmp_path / "fresh", **common)
    tuned, _, config = load_for_inference(tmp_path / "tuned")
    fresh, _, _ = load_for_inference(tmp_path / "fresh")
    gap = lambda a, b: max((x - y).abs().max().item() for x, y in zip(a.state_dict().values(),
                                                                      b.state_dict().values()))
    assert gap(tuned, source) < 1e-6 < 1e-2 < gap(fresh, source)
    assert config["train"]["init_from"] == str(run)   # the resolved config records where it started
    with pytest.raises(ValueError, match="another architecture"):
        train(data, tmp_path / "deeper", init_from=str(run), overrides=["depth=1"], **common)
    with pytest.raises(ValueError, match="no such run or weights folder"):
        train(data, tmp_path / "typo", init_from=str(tmp_path / "nowhere"), **common)
    train(data, tmp_path / "grown", init_from=str(run), image_size=64, overrides=["patch_size=8"], **common)
    grown, _, config = load_for_inference(tmp_path / "grown")
    assert (config["model"]["image_size"], tuple(grown.x_embed.weight.shape[-2:])) == (64, (8, 8))
    assert torch.equal(grown.blocks[0].mlp.fc1.weight, source.blocks[0].mlp.fc1.weight)  # the transformer carries over


def test_grown_model_is_the_old_one_upsampled():
    """Images and patches 2x larger on the same token grid: on a 2x2-block image the grown model's output is the
    old model's output with each pixel doubled, so a 64 px run starts where the 32 px model stands."""
    from model.dit import DiTConfig, StreamDiT
    from train.weights import grow_patches
    torch.manual_seed(0)
    old = StreamDiT(DiTConfig(image_size=8, patch_size=2, hidden_size=32, depth=1, num_heads=2)).eval()
    for p in old.parameters():   # the zero-initialised output layers would make the check trivial
        torch.nn.init.normal_(p, std=0.1)
    grown = StreamDiT(DiTConfig(image_size=16, patch_size=4, hidden_size=32, depth=1, num_heads=2)).eval()
    grown.load_state_dict(grow_patches(old.state_dict(), 2, 2, old.out_channels, grown.state_dict()))
    x, cond, t = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.tensor([10, 500])
    up = lambda a: a.repeat_interleave(2, -2).repeat_interleave(2, -1)
    with torch.no_grad():
        want, got = up(old(x, t, cond)), grown(up(x), t, up(cond))
    assert want.abs().mean() > 0.05
    assert torch.allclose(got, want, atol=1e-5)
    detail = torch.randn(2, 3, 16, 16)
    detail -= up(torch.nn.functional.avg_pool2d(detail, 2))   # zero mean in each 2x2 block
    with torch.no_grad():   # ...while the tokens see detail within a block (no saddle for training to sit at)
        assert (grown.x_embed(up(x) + detail) - grown.x_embed(up(x))).abs().mean() > 1e-2
