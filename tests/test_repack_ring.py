"""repack ring: folders of views 60 degrees apart -> every consecutive pair, resumable after a kill."""
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from render.repack_ring import natural_key, repack_ring
from conftest import read_shards

REPO = Path(__file__).resolve().parents[1]


def view_colour(i):
    return (20 * i + 10, 255 - 20 * i, 128)


def make_ring(folder, count, alpha=False, names="{:03d}.png"):
    """`count` 24x24 views whose colour encodes their index; RGBA with a transparent border if `alpha`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.zeros((24, 24, 4), np.uint8)
        pixels[..., :3] = view_colour(i)
        pixels[..., 3] = 255
        if alpha:
            pixels[:4, :, 3] = 0
        Image.fromarray(pixels if alpha else pixels[..., :3]).save(folder / names.format(i))


def index_of(png):
    """Which view a PNG shows, from its centre colour."""
    r = int(np.asarray(Image.open(io.BytesIO(png)))[12, 12, 0])
    return round((r - 10) / 20)


def test_every_consecutive_pair_including_last_to_first(tmp_path):
    root = tmp_path / "views_64"
    for name in ("obj_a", "obj_b", "batch1/obj_c"):
        make_ring(root / name, 6)
    make_ring(root / "transparent", 6, alpha=True)
    make_ring(root / "single", 1)
    make_ring(root / "partial", 4)
    make_ring(root / ".ipynb_checkpoints" / "obj_a", 6)
    summary = repack_ring(root, tmp_path / "out", size=24, workers=1)
    samples = read_shards(tmp_path / "out")
    assert len(samples) == 4 * 6 + 3
    assert summary["too_few_images"] == ["single"] and summary["open_rings"] == ["partial"]
    for key, sample in samples.items():
        meta = json.loads(sample["json"])
        i = meta["pair"]
        assert key == f"{meta['uid']}_{i:02d}" and meta["source"] == "ring" and meta["delta_azimuth_deg"] == 60
        assert meta["src"]["azimuth_deg"] == i * 60 and meta["tgt"]["azimuth_deg"] == ((i + 1) % 6) * 60
        assert (index_of(sample["src.png"]), index_of(sample["tgt.png"])) == (i, (i + 1) % 6)
    assert "batch1_obj_c_05" in samples and "partial_03" not in samples   # an open ring has no wrap-around pair
    clear = np.asarray(Image.open(io.BytesIO(samples["transparent_00"]["src.png"])))
    assert clear.shape == (24, 24, 4) and (clear[:4, :, 3] == 0).all() and (clear[4:, :, 3] == 255).all()
    again = repack_ring(root, tmp_path / "out", size=24, workers=2)
    assert again["samples"] == 0 and again["skipped"] == 5 and len(read_shards(tmp_path / "out")) == 27


def test_views_sort_naturally_and_step_sets_azimuths(tmp_path):
    assert sorted(["10.png", "2.png", "1.png"], key=natural_key) == ["1.png", "2.png", "10.png"]
    make_ring(tmp_path / "ring" / "obj", 10, names="view_{}.jpg")
    repack_ring(tmp_path / "ring", tmp_path / "out", step_deg=36, size=16, workers=1)
    samples = read_shards(tmp_path / "out")
    last = json.loads(samples["obj_09"]["json"])
    assert len(samples) == 10 and (last["src"]["azimuth_deg"], last["tgt"]["azimuth_deg"]) == (324, 0)
    assert (last["src"]["file"], last["tgt"]["file"]) == ("view_9.jpg", "view_0.jpg")


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        repack_ring(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        repack_ring(tmp_path / "empty", tmp_path / "out")
    make_ring(tmp_path / "ring" / "obj", 6)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not shards of this tool"):
        repack_ring(tmp_path / "ring", tmp_path / "used")
    with pytest.raises(ValueError, match="step-deg"):
        repack_ring(tmp_path / "ring", tmp_path / "out", step_deg=0)


SLOW_REPACK = """
import sys, time
import render.repack as repack
from render.repack_ring import repack_ring
fit = repack.fit_square
repack.fit_square = lambda path, size: (time.sleep(0.05), fit(path, size))[1]
repack_ring(sys.argv[1], sys.argv[2], size=16, workers=1, shard_size=6)
"""


def test_killed_run_resumes_without_duplicates(tmp_path):
    root, out = tmp_path / "ring", tmp_path / "out"
    for i in range(20):
        make_ring(root / f"obj{i:02d}", 6)
    process = subprocess.Popen([sys.executable, "-c", SLOW_REPACK, str(root), str(out)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(list(out.glob("*.tar"))) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()   # SIGKILL: no cleanup of any kind
    process.wait()
    done_before = len(read_shards(out))
    assert 12 <= done_before < 120   # killed part-way, with complete shards on disk
    summary = repack_ring(root, out, size=16, workers=1, shard_size=6)
    assert summary["skipped"] * 6 == done_before and len(read_shards(out)) == 120
    assert not list(out.glob("*.tmp"))
