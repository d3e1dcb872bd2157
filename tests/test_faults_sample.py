"""Bad input to sample and evaluate: one `Error:` line naming the option or file, never a silent wrong result."""
import json
import shutil
import struct
import zlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import cli
from datasets import images
from model.diffusion import DiffusionConfig, GaussianDiffusion
from conftest import make_weights, write_box_shards
from train.weights import load_for_inference
from train.metrics import all_metrics, psnr
from train.sample import make_generator, pick_device


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_box_shards(tmp_path_factory.mktemp("shards"), objects=4, pairs=1, size=32)


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("DEBUG", raising=False)


def invoke(*args):
    """Run the CLI in this process; returns (exit code, stderr lines). A traceback-worthy exception fails the test."""
    result = CliRunner().invoke(cli.cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr.strip().splitlines()


def error_of(*args):
    """The CLI's one-line error for ARGS (asserts it failed with one)."""
    code, lines = invoke(*args)
    assert code != 0, f"expected a failure, got exit 0: {lines[-3:]}"
    assert lines and lines[-1].startswith("Error: "), lines
    return lines[-1]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("option,value", [("--cfg-scale", "nan"), ("--cfg-scale", "inf"), ("--cfg-scale", "-1"),
                                          ("--eta", "nan"), ("--eta", "inf"), ("--eta", "2")])
def test_non_finite_or_out_of_range_guidance_is_refused(weights, photo, tmp_path, option, value):
    message = error_of("sample", "--checkpoint", weights, photo, "--out", tmp_path / "out", "--steps", 2,
                       "--sampler", "ddim", option, value)
    assert option in message
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_nan_guidance(weights, shards, tmp_path):
    message = error_of("evaluate", "--checkpoint", weights, "--data", shards, "--split", "all", "--out",
                       tmp_path / "r.json", "--steps", 2, "--cfg-scale", "nan")
    assert "--cfg-scale" in message and not (tmp_path / "r.json").exists()


def test_metrics_fail_loudly_on_non_finite_values():
    target = np.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        psnr(np.full_like(target, np.nan), target)     # min(PSNR_CAP_DB, nan) scored a perfect 100 dB
    with pytest.raises(ValueError, match="NaN or inf"):
        all_metrics(np.full_like(target, np.inf), target, (255, 255, 255))


def test_non_finite_samples_are_an_error_not_black_pixels(weights):
    net, diffusion, _ = load_for_inference(weights)
    generate = make_generator(net, diffusion, steps=2, sampler="ddim", eta=0.0, cfg_scale=float("inf"), seed=0,
                              batch_size=2, bar=type("Bar", (), {"update": lambda self, n: None})())
    with pytest.raises(ValueError, match="non-finite"):
        generate(torch.zeros(2, 3, 32, 32))


def corrupt(folder, tmp_path, how):
    """A copy of a weights folder with model.safetensors damaged: 4 KB of flipped bytes, or cut in half."""
    copy = tmp_path / f"w-{how}"
    shutil.copytree(folder, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    if how == "flipped":
        middle = len(data) // 2
        data[middle:middle + 4096] = bytes(b ^ 0xFF for b in data[middle:middle + 4096])
    else:
        data = data[:len(data) // 2]
    (copy / "model.safetensors").write_bytes(bytes(data))
    return copy


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_damaged_local_weights_are_caught_by_their_sums(weights, photo, shards, tmp_path, how):
    damaged = corrupt(weights, tmp_path, how)
    message = error_of("sample", "--checkpoint", damaged, photo, "--out", tmp_path / "out", "--steps", 2)
    assert "model.safetensors" in message and "SHA256SUMS" in message
    message = error_of("evaluate", "--checkpoint", damaged, "--data", shards, "--split", "all",
                       "--out", tmp_path / "r.json", "--steps", 2)   # was: PSNR 100.00 dB
    assert "model.safetensors" in message and not (tmp_path / "r.json").exists()


def test_truncated_weights_without_sums_name_the_file(weights, photo, tmp_path):
    damaged = corrupt(weights, tmp_path, "truncated")
    (damaged / "SHA256SUMS").unlink()
    message = error_of("sample", "--checkpoint", damaged, photo, "--out", tmp_path / "out", "--steps", 2)
    assert message.startswith(f"Error: cannot load weights {damaged / 'model.safetensors'}")


def test_config_without_data_section_is_refused(weights, photo, tmp_path):
    copy = tmp_path / "w"
    shutil.copytree(weights, copy)
    (copy / "SHA256SUMS").unlink()
    config = (copy / "config.json").read_text().replace('"data"', '"not_data"')
    (copy / "config.json").write_text(config)
    message = error_of("sample", "--checkpoint", copy, photo, "--out", tmp_path / "out", "--steps", 2)
    assert "config.json" in message and "'data'" in message


def test_sample_never_writes_over_an_input(weights, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("photo.png", "photo_turned.png"):
        Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(folder / name)
    before = (folder / "photo_turned.png").read_bytes()
    message = error_of("sample", "--checkpoint", weights, folder, "--out", folder, "--steps", 2)
    assert "photo_turned.png" in message and "input" in message
    assert (folder / "photo_turned.png").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["photo.png", "photo_turned.png"]


def test_one_step_sampling_works(weights, photo, tmp_path):
    diffusion = GaussianDiffusion(DiffusionConfig())
    assert torch.isfinite(diffusion.respaced(1).post_logvar).all()   # was empty: IndexError
    for sampler in ("ancestral", "ddim"):
        code, lines = invoke("sample", "--checkpoint", weights, photo, "--out", tmp_path / sampler, "--steps", 1,
                             "--sampler", sampler)
        assert code == 0, lines
        assert (tmp_path / sampler / "photo_turned.png").is_file()


def test_bad_devices_are_one_line_errors(weights, photo, tmp_path):
    message = error_of("sample", "--checkpoint", weights, photo, "--out", tmp_path / "out", "--device", "bogus")
    assert "--device" in message and "bogus" in message
    with pytest.raises(ValueError, match="CUDA GPU"):
        pick_device(f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}")
    if not torch.cuda.is_available():
        message = error_of("sample", "--checkpoint", weights, photo, "--out", tmp_path / "out", "--device", "cuda")
        assert "--device cuda" in message


def test_evaluate_val_split_needs_a_recorded_val_fraction(shards, tmp_path):
    folder = make_weights(tmp_path / "w")
    config = json.loads((folder / "config.json").read_text())
    del config["data"]["val_fraction"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "SHA256SUMS").unlink()
    message = error_of("evaluate", "--checkpoint", folder, "--data", shards, "--out", tmp_path / "r.json",
                       "--steps", 2)
    assert "records no val_fraction" in message and "--split all" in message


def test_no_pairs_with_split_all_does_not_suggest_split_all(weights, tmp_path):
    import webdataset as wds
    (tmp_path / "empty").mkdir()
    with wds.TarWriter(str(tmp_path / "empty" / "shard-000000.tar")):
        pass
    message = error_of("evaluate", "--checkpoint", weights, "--data", tmp_path / "empty", "--split", "all",
                       "--out", tmp_path / "r.json", "--steps", 2)
    assert message.startswith("Error: no all pairs") and "try --split all" not in message


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width, height):
    """A PNG claiming width x height whose pixel data stop after a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_input_pixel_limit_is_checked_before_decoding(weights, tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(10000, 10000))   # would take 0.3 GB decoded
    message = error_of("sample", "--checkpoint", weights, huge, "--out", tmp_path / "out")
    assert message.startswith(f"Error: image too large: {huge} is 10000x10000")
    assert 10000 * 10000 > images.MAX_INPUT_PIXELS >= 48_000_000   # a 48-megapixel phone photo still passes
    with pytest.raises(ValueError, match="cannot read image"):
        images.load_image(png_header(100, 100))   # a small header without pixels: still a decode error


def test_parse_time_choices_match_the_packages():
    from model.presets import PRESETS
    from render.backend import BACKENDS
    assert set(cli.PRESET_NAMES) == set(PRESETS)
    for args in (["train", "--preset", "huge"], ["render", "procedural", "--backend", "vulkan"]):
        code, lines = invoke(*args, "--out", "/nonexistent/never-made")
        assert code == 2 and "Invalid value" in lines[-1]
    backend = next(p for p in cli.render_procedural_command.params if p.name == "backend")
    assert tuple(backend.type.choices) == BACKENDS
