"""`cli.py sample` end to end in a subprocess: odd inputs, folders, a corrupt file, a turntable, the default checkpoint."""
import numpy as np
import pytest
from PIL import Image

from conftest import make_weights, run_cli
from train.weights import resolve_checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("weights"))


def test_sample_rgba_grayscale_odd_sizes_and_folders(weights, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rgba = np.zeros((90, 70, 4), np.uint8)
    rgba[20:70, 15:55] = (200, 40, 40, 255)
    Image.fromarray(rgba).save(inputs / "odd_rgba.png")
    Image.fromarray(np.full((50, 81), 128, np.uint8)).save(inputs / "gray.jpg")
    (inputs / "notes.txt").write_text("not an image: folders contribute image files only")
    extra = tmp_path / "photo.png"
    Image.fromarray(np.full((33, 17, 3), 90, np.uint8)).save(extra)

    r = run_cli("sample", "--checkpoint", weights, inputs, extra, "--out", tmp_path / "out", "--steps", 2,
                "--num-samples", 2)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"{stem}_{kind}{display}.png" for stem in ("gray", "odd_rgba", "photo")
                           for kind in ("input", "s0_turned", "s1_turned") for display in ("", "_256px"))
    for name in names:   # the tiny model's size, square; each with a display copy at --display-size
        assert Image.open(tmp_path / "out" / name).size == ((256, 256) if "256px" in name else (32, 32))
    prepared = np.asarray(Image.open(tmp_path / "out" / "odd_rgba_input.png"))
    assert prepared[0, 0].tolist() == [255, 255, 255]             # transparency composited on the white background
    assert prepared[16, 16, 0] > 150 and prepared[16, 16, 1] < 100  # the red box survives centring and resizing
    assert "sampled 3 input(s) x 2 sample(s)" in r.stderr


def test_sample_corrupt_image_is_one_line_error(weights, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    r = run_cli("sample", "--checkpoint", weights, good, broken, "--out", tmp_path / "out", "--steps", 2)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"Error: cannot read image: {broken}"]
    assert not (tmp_path / "out").exists()        # inputs are checked before anything is written


def test_sample_missing_input_and_bad_checkpoint(weights, tmp_path):
    r = run_cli("sample", "--checkpoint", weights, tmp_path / "nope.png", "--out", tmp_path / "out")
    assert r.returncode == 1 and "Error: input not found" in r.stderr and "Traceback" not in r.stderr
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    r = run_cli("sample", "--checkpoint", tmp_path / "no_run", img, "--out", tmp_path / "out")
    assert r.returncode == 1 and "Error: checkpoint not found" in r.stderr and "Traceback" not in r.stderr


def test_turntable_of_three_views(weights, tmp_path):
    img = tmp_path / "thing.png"
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 5:20] = (30, 120, 200, 255)
    Image.fromarray(rgba).save(img)
    r = run_cli("sample", "--checkpoint", weights, img, "--out", tmp_path / "tt", "--steps", 2, "--turntable", 3)
    assert r.returncode == 0, r.stderr
    views = sorted((tmp_path / "tt").glob("thing_view??.png"))
    assert [v.name for v in views] == ["thing_view00.png", "thing_view01.png", "thing_view02.png"]
    assert "3 views 60 degrees apart, clockwise seen from above (0 to 120 degrees)" in r.stderr   # an old model: 60
    assert np.asarray(Image.open(views[0]))[0, 0].tolist() == [255, 255, 255]   # view 0: the prepared input
    strip = Image.open(tmp_path / "tt" / "thing_turntable.png")
    gif = Image.open(tmp_path / "tt" / "thing_turntable.gif")
    assert gif.n_frames == 3
    assert strip.size == (3 * gif.size[0], gif.size[1]) and gif.size[0] == 256   # enlarged to --display-size
    # view 1 is a generation, not a copy of the input
    assert not np.array_equal(np.asarray(Image.open(views[0])), np.asarray(Image.open(views[1])))


def test_default_checkpoint_needs_shipped_weights(tmp_path, monkeypatch):
    monkeypatch.setattr("train.weights.WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="pass --checkpoint"):
        resolve_checkpoint(None)
    make_weights(tmp_path / "weights" / "other")
    make_weights(tmp_path / "weights" / "reference")
    assert resolve_checkpoint(None) == tmp_path / "weights" / "reference"


def test_cli_defaults_are_the_ones_declared_in_train_defaults():
    import inspect

    import cli
    from train import defaults as D
    from train.evaluate import evaluate
    from train.sample import sample
    sampling = {"sampler": D.DEFAULT_SAMPLER, "steps": D.DEFAULT_STEPS, "eta": D.DEFAULT_ETA, "cfg_scale": D.DEFAULT_CFG,
                "seed": D.DEFAULT_SEED, "batch_size": D.DEFAULT_BATCH_SIZE}
    wanted = {cli.sample: dict(sampling, display_size=D.DISPLAY_SIZE),
              cli.evaluate: dict(sampling, split=D.DEFAULT_SPLIT, mean_pairs=D.DEFAULT_MEAN_PAIRS),
              cli.serve: {"host": D.DEFAULT_HOST, "port": D.DEFAULT_PORT, "max_jobs": D.DEFAULT_MAX_JOBS}}
    for command, values in wanted.items():
        assert {p.name: p.default for p in command.params if p.name in values} == values, command.name
    for fn, command in ((sample, cli.sample), (evaluate, cli.evaluate)):   # the package functions agree
        signature = inspect.signature(fn).parameters
        assert {k: signature[k].default for k in wanted[command]} == wanted[command], fn.__name__
    # Train options default to None ("not given": --resume keeps the run's value); their help shows the real default.
    help_text = {p.name: p.help for p in cli.train_command.params}
    for name, value in {**D.TRAIN_DEFAULTS, **D.DATA_DEFAULTS}.items():
        if name in help_text and name != "lr":
            assert f"[default: {'none' if value is None else value}" in help_text[name], name
    assert all(f"{v:g}" in help_text["lr"] for v in D.LR_BY_PRESET.values())
