"""repack mvc: a small MVC-like tree (real JPEGs, real names, nested folders, gaps, damage) -> shards read back."""
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import read_shards
from render.repack import fit_square
from render.repack_mvc import repack_mvc

# a distinct colour per view, so that a sample shows which views it paired
VIEW_COLOURS = {"p": (200, 40, 40), "1": (40, 200, 40), "2": (40, 40, 200), "3": (200, 200, 40)}


def rgba(png):
    return np.asarray(Image.open(io.BytesIO(png)))


def save_view(path, view, size=(192, 224)):
    """A portrait JPEG like MVC's (1920x2240 scaled down): the view's colour with a little noise."""
    rng = np.random.default_rng(len(str(path)))
    pixels = np.clip(np.array(VIEW_COLOURS[view]) + rng.integers(-8, 8, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=92)


@pytest.fixture
def mvc_tree(tmp_path):
    """Six items in flat and nested folders: 4 complete, 1 without view 3, 1 with a truncated view-1 JPEG."""
    root = tmp_path / "MVC"
    (root / "women" / "dresses").mkdir(parents=True)
    (root / "men").mkdir()
    for style, folder in [("1001", root), ("1002", root / "women" / "dresses"), ("1003", root / "men"),
                          ("1004", root / "women")]:
        for view in ("p", "1", "2", "3"):
            save_view(folder / f"{style}-{view}-4x.jpg", view)
    for view in ("p", "1", "2"):
        save_view(root / "men" / f"2001-{view}-4x.jpg", view)
    save_view(root / "3001-3-4x.jpg", "3")
    save_view(root / "3001-1-4x.jpg", "1")
    data = (root / "3001-1-4x.jpg").read_bytes()
    (root / "3001-1-4x.jpg").write_bytes(data[: len(data) // 2])
    (root / "readme.txt").write_text("not an image")
    return root


def write_metadata(path, styles):
    """An mvc_info.json-like list: one record per image, item fields repeated, per-view fields varying."""
    records = [{"productId": 90000 + int(style), "itemN": i, "category": "Dresses", "productGender": "Women",
                "viewId": view, "image_url_4x": f"http://www.zappos.com/images/z/{style}-{view}-4x.jpg"}
               for i, style in enumerate(styles) for view in ("p", "1", "3")]
    path.write_text(json.dumps(records))
    return path


def test_pairs_condition_and_target_views_of_every_complete_item(mvc_tree, tmp_path):
    out = tmp_path / "out"
    meta_file = write_metadata(tmp_path / "mvc_info.json", ["1001", "1002", "1003"])
    summary = repack_mvc(mvc_tree, out, size=32, metadata=meta_file, workers=1)
    samples = read_shards(out)
    assert sorted(samples) == ["1001_00", "1002_00", "1003_00", "1004_00"]
    for sample in samples.values():
        src, tgt = rgba(sample["src.png"]), rgba(sample["tgt.png"])
        assert src.shape == tgt.shape == (32, 32, 4) and (src[..., 3] == 255).all() and (tgt[..., 3] == 255).all()
        assert np.abs(src[16, 16, :3].astype(int) - VIEW_COLOURS["1"]).max() < 25   # view 1 is the condition
        assert np.abs(tgt[16, 16, :3].astype(int) - VIEW_COLOURS["3"]).max() < 25   # view 3 is the target
        assert (src[16, 0, :3] > 240).all()   # a portrait photo is padded left and right with white
        meta = json.loads(sample["json"])
        assert meta["source"] == "mvc" and meta["pair"] == 0 and meta["size"] == 32 and meta["fov_deg"] is None
        assert meta["delta_azimuth_deg"] == 60.0 and meta["delta_azimuth_nominal"] is True
        assert meta["src"]["view"] == "1" and meta["tgt"]["view"] == "3" and meta["src"]["cam2world"] is None
    with_meta = {k: json.loads(s["json"])["meta"] for k, s in samples.items()}
    assert with_meta["1001_00"] == {"productId": 91001, "itemN": 0, "category": "Dresses", "productGender": "Women"}
    assert with_meta["1004_00"] is None   # no record for this item
    failures = [json.loads(line) for line in open(out / "failures.jsonl")]
    assert [(f["uid"], f["path"].endswith("3001-1-4x.jpg")) for f in failures] == [("3001", True)]
    assert "truncated" in failures[0]["reason"].lower()
    assert summary["lacking_view"] == ["2001"] and summary["samples"] == 4 and summary["failed"] == 1


def test_rerun_writes_nothing_new_and_other_settings_are_refused(mvc_tree, tmp_path, capsys):
    out = tmp_path / "out"
    repack_mvc(mvc_tree, out, size=32, workers=2)
    shards = sorted(out.glob("*.tar"))
    again = repack_mvc(mvc_tree, out, size=32, workers=2)
    assert again["samples"] == 0 and again["failed"] == 0 and again["skipped"] == 5
    assert sorted(out.glob("*.tar")) == shards and len(read_shards(out)) == 4
    assert "1 items lacking view 1 or 3: 2001" in capsys.readouterr().out
    with pytest.raises(ValueError, match="other settings"):
        repack_mvc(mvc_tree, out, size=64, workers=1)


def test_other_views_and_metadata_keyed_by_id(mvc_tree, tmp_path):
    meta_file = tmp_path / "items.json"
    meta_file.write_text(json.dumps({"1002": {"brand": "A"}, "1003-p-4x.jpg": {"brand": "B"}, "9999": {}}))
    out = tmp_path / "out"
    summary = repack_mvc(mvc_tree, out, cond_view="p", target_view="2", size=16, metadata=meta_file, workers=1)
    samples = read_shards(out)
    assert sorted(samples) == ["1001_00", "1002_00", "1003_00", "1004_00", "2001_00"]
    assert json.loads(samples["1002_00"]["json"])["meta"] == {"brand": "A"}
    assert json.loads(samples["1003_00"]["json"])["meta"] == {"brand": "B"}
    assert np.abs(rgba(samples["2001_00"]["tgt.png"])[8, 8, :3].astype(int) - VIEW_COLOURS["2"]).max() < 25
    assert summary["lacking_view"] == ["3001"]


def test_large_jpeg_is_decoded_at_reduced_scale_and_fitted():
    buffer = io.BytesIO()
    Image.new("RGB", (1920, 2240), (10, 120, 230)).save(buffer, "JPEG", quality=90)
    image = fit_square(io.BytesIO(buffer.getvalue()), 64)
    pixels = np.asarray(image)
    assert image.mode == "RGBA" and pixels.shape == (64, 64, 4) and (pixels[..., 3] == 255).all()
    assert np.abs(pixels[32, 32, :3].astype(int) - (10, 120, 230)).max() < 6
    assert (pixels[32, 0, :3] == 255).all() and (pixels[32, 31, :3] < 240).any()   # 55 px wide, centred


@pytest.mark.parametrize("setup, error, message", [
    (lambda t: t / "missing", FileNotFoundError, "does not exist"),
    (lambda t: (t / "empty").mkdir() or t / "empty", ValueError, "no MVC images"),
])
def test_clear_errors_for_bad_input_folders(tmp_path, setup, error, message):
    with pytest.raises(error, match=message):
        repack_mvc(setup(tmp_path), tmp_path / "out", workers=1)


def test_clear_errors_for_views_metadata_and_foreign_output(mvc_tree, tmp_path):
    with pytest.raises(ValueError, match=r"no item .* has both view 1 and view 9 \(views found: 1, 2, 3, p\)"):
        repack_mvc(mvc_tree, tmp_path / "out", target_view="9", workers=1)
    with pytest.raises(ValueError, match="must differ"):
        repack_mvc(mvc_tree, tmp_path / "out", cond_view="3", workers=1)
    (tmp_path / "bad.json").write_text('[{"productId": 1}]')
    with pytest.raises(ValueError, match="names an item found"):
        repack_mvc(mvc_tree, tmp_path / "out", metadata=tmp_path / "bad.json", workers=1)
    (tmp_path / "bad.json").write_text('["a", "b"]')
    with pytest.raises(ValueError, match="list of objects or an object keyed by item id"):
        repack_mvc(mvc_tree, tmp_path / "out", metadata=tmp_path / "bad.json", workers=1)
    with pytest.raises(FileExistsError, match="not shards of this tool"):
        repack_mvc(mvc_tree, mvc_tree / "men", workers=1)


def test_cli_prints_one_line_errors():
    from cli import cli
    result = CliRunner().invoke(cli, ["repack", "mvc", "/nonexistent/MVC", "--out", "/tmp/never"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: MVC folder /nonexistent/MVC does not exist"]


def test_repack_defaults_are_declared_once_for_cli_and_functions():
    import inspect

    import cli
    from render.repack import REPACK_DEFAULTS
    from render.repack_ring import repack_ring
    for command, fn in ((cli.repack_mvc_command, repack_mvc), (cli.repack_ring_command, repack_ring)):
        options = {p.name: p.default for p in command.params if p.name in REPACK_DEFAULTS}
        signature = {k: v.default for k, v in inspect.signature(fn).parameters.items() if k in REPACK_DEFAULTS}
        assert options == signature == {k: REPACK_DEFAULTS[k] for k in options} and len(options) >= 3, command.name
