"""Shard writer: webdataset round trip, resume bookkeeping, foreign folders, settings mismatch, info and preview."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from render.inspect_shards import shards_info, shards_preview
from render.shards import encode_png
from render.shards import Failure, ShardSink, finished_uids, read_jsonl, sample_key, sanitise_uid, write_objects
from conftest import read_shards


def _samples(uid, count, size=8):
    rng = np.random.default_rng(abs(hash(uid)) % 2**32)
    out = []
    for pair in range(count):
        image = rng.integers(0, 255, (size, size, 4), dtype=np.uint8)
        meta = {"uid": uid, "source": "procedural", "pair": pair, "fov_deg": 40.0}
        out.append({"__key__": sample_key(uid, pair), "src.png": encode_png(image), "tgt.png": encode_png(image),
                    "json": json.dumps(meta).encode()})
    return out


def test_keys_are_sanitised_without_dots():
    assert sanitise_uid("chairs/a b.glb") == "chairs_a_b_glb"
    assert sample_key("x.y", 3) == "x_y_03"


def test_round_trip_through_webdataset(tmp_path):
    objects = [(f"obj{i}", _samples(f"obj{i}", 3)) for i in range(5)] + [("bad", Failure("unreadable: x", "/a"))]
    sink = write_objects(tmp_path, iter(objects), shard_size=7)
    samples = list(read_shards(tmp_path).values())
    assert sorted(s["__key__"] for s in samples) == sorted(f"obj{i}_{p:02d}" for i in range(5) for p in range(3))
    assert sink.shards_written == 3 and len(list(tmp_path.glob("*.tar"))) == 3   # 3+3 | 3+3 | 3: objects whole
    first = samples[0]
    assert json.loads(first["json"])["uid"] == first["__key__"].rsplit("_", 1)[0]
    assert np.asarray(Image.open(__import__("io").BytesIO(first["src.png"]))).shape == (8, 8, 4)
    assert read_jsonl(tmp_path / "failures.jsonl") == [{"uid": "bad", "path": "/a", "reason": "unreadable: x"}]
    assert finished_uids(tmp_path) == {f"obj{i}" for i in range(5)} | {"bad"}
    assert not list(tmp_path.glob("*.tmp"))


def test_rerun_skips_finished_objects_and_never_duplicates(tmp_path):
    write_objects(tmp_path, iter([("a", _samples("a", 2)), ("b", _samples("b", 2))]), shard_size=2)
    write_objects(tmp_path, iter([("a", _samples("a", 2)), ("c", _samples("c", 2))]), shard_size=2)
    keys = list(read_shards(tmp_path))
    assert sorted(keys) == ["a_00", "a_01", "b_00", "b_01", "c_00", "c_01"]
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == [f"shard-r000-00000{i}.tar" for i in range(3)]


def test_killed_shard_is_dropped_and_redone(tmp_path):
    """A shard still under its temp name (or recorded but never renamed) counts for nothing on the next run."""
    sink = ShardSink(tmp_path, shard_size=10)
    sink.add("a", _samples("a", 2))
    sink.writer.close()                      # as if killed before the rename: only shard-...tar.tmp exists
    assert finished_uids(tmp_path) == set()
    with open(tmp_path / "progress-r000.jsonl", "a") as f:
        f.write('{"shard": "shard-r000-000000.tar", "uids": ["a"], "samples": 2}\n{"shard": "shard-r0')   # torn line
    write_objects(tmp_path, iter([("a", _samples("a", 2))]))
    assert list(read_shards(tmp_path)) == ["a_00", "a_01"]
    assert not list(tmp_path.glob("*.tmp"))
    assert [p.name for p in tmp_path.glob("*.tar")] == ["shard-r000-000001.tar"]   # never reuses a recorded name


def test_folder_with_someone_elses_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        ShardSink(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine" and len(os.listdir(tmp_path)) == 1


def test_other_settings_are_refused(tmp_path):
    ShardSink(tmp_path, job={"size": 64}).close()
    with pytest.raises(ValueError, match="size"):
        ShardSink(tmp_path, job={"size": 128})


def test_info_and_preview(tmp_path, capsys):
    write_objects(tmp_path / "s", iter([("a", _samples("a", 2)), ("b", _samples("b", 1)),
                                        ("c", Failure("timeout: 3 s"))]), shard_size=2)
    info = shards_info(tmp_path / "s", as_json=True)
    assert json.loads(capsys.readouterr().out) == info
    assert (info["objects"], info["samples"], info["shards"], info["failures"]) == (2, 3, 2, 1)
    assert info["bytes"] == sum(p.stat().st_size for p in (tmp_path / "s").glob("*.tar"))
    shards_preview(tmp_path / "s", tmp_path / "grid.png", count=2)
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size[0] > 2 * 128 and grid.size[1] > 128
    with pytest.raises(FileNotFoundError):
        shards_info(tmp_path / "missing")


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_other_size_is_refused_from_the_shards_when_job_json_is_lost(tmp_path, damage):
    job = {"source": "procedural", "size": 8, "seed": 0}
    write_objects(tmp_path, iter([("a", _samples("a", 2, size=8))]), job=job)
    if damage == "missing":
        (tmp_path / "job.json").unlink()
    else:
        (tmp_path / "job.json").write_text('{"source": "proced')
    with pytest.raises(ValueError, match="size 8 there, 16 now"):
        ShardSink(tmp_path, job=dict(job, size=16))
    ShardSink(tmp_path, job=job).close()   # the same settings may still add to it
    assert json.loads((tmp_path / "job.json").read_text()) == job


def _damaged_folder(folder):
    """Good shards next to a non-tar .tar, a truncated shard, a sample with bad JSON and one with a corrupt PNG."""
    write_objects(folder, iter([(f"o{i}", _samples(f"o{i}", 2)) for i in range(4)]), shard_size=2)
    shards = sorted(folder.glob("*.tar"))
    whole = shards[1].read_bytes()
    shards[1].write_bytes(whole[: len(whole) // 2 + 100])           # truncated mid-member
    (folder / "shard-r000-000009.tar").write_text("<!DOCTYPE html>")  # not a tar at all
    bad = _samples("bad", 2)
    bad[0]["json"] = b"{not json"
    bad[1]["src.png"] = bad[1]["src.png"][:40]                        # PNG cut short
    write_objects(folder, iter([("bad", bad)]))


def test_info_and_preview_skip_and_report_damage(tmp_path, capsys):
    _damaged_folder(tmp_path)
    info = shards_info(tmp_path)
    text = capsys.readouterr().out
    assert "skipped" in text and "shard-r000-000009.tar: unreadable" in text and "bad_00: bad json" in text
    assert "shard-r000-000001.tar: unreadable shard (truncated" in text
    assert (info["objects"], info["samples"]) == (5, 8)   # o0, o2, o3 whole, o1 up to the cut, bad_01
    shards_preview(tmp_path, tmp_path.parent / "grid.png", count=16)
    text = capsys.readouterr().out
    assert "corrupt PNG" in text and "unreadable shard" in text


def test_cli_info_and_preview_on_damage_and_on_no_shards_are_one_line(tmp_path):
    import cli
    from click.testing import CliRunner
    _damaged_folder(tmp_path / "d")
    (tmp_path / "empty").mkdir()
    runner = CliRunner()
    for args in (["shards", "info", str(tmp_path / "d")],
                 ["shards", "preview", str(tmp_path / "d"), "--out", str(tmp_path / "g.png")]):
        result = runner.invoke(cli.cli, args)
        assert result.exit_code == 0 and "Traceback" not in result.output and "skipped" in result.output, result.output
    for command in ("info", "preview"):
        args = ["shards", command, str(tmp_path / "empty")] + (["--out", str(tmp_path / "e.png")] * (command == "preview"))
        result = runner.invoke(cli.cli, args)
        assert result.exit_code == 1 and result.output.strip() == f"Error: no shards (*.tar) in {tmp_path / 'empty'}"


def test_info_prints_sizes_with_units(tmp_path, capsys):
    objects = [(f"o{i}", _samples(f"o{i}", 2)) for i in range(2)]
    for _, samples in objects:
        for s in samples:
            s["json"] = json.dumps(dict(json.loads(s["json"]), size=256)).encode()
    write_objects(tmp_path, iter(objects))
    shards_info(tmp_path)
    assert "image sizes: 256 px (4 samples)" in capsys.readouterr().out


def test_preview_is_labelled_big_and_shuffles_across_the_set(tmp_path, capsys):
    write_objects(tmp_path / "s", iter([(f"o{i:02d}", _samples(f"o{i:02d}", 2)) for i in range(20)]), shard_size=4)
    shards_preview(tmp_path / "s", tmp_path / "first.png", count=4, columns=2)
    grid = np.asarray(Image.open(tmp_path / "first.png"))
    assert grid.shape[1] >= 2 * 2 * 128 and grid.shape[0] >= 2 * 128
    assert "source | target" in capsys.readouterr().out
    def drawn(seed):
        shards_preview(tmp_path / "s", tmp_path / f"shuffled{seed}.png", count=4, shuffle=True, seed=seed)
        return (tmp_path / f"shuffled{seed}.png").read_bytes()
    assert drawn(1) == drawn(1) and drawn(1) != drawn(2) != (tmp_path / "first.png").read_bytes()
    keys = {k for seed in range(5) for k in _preview_keys(tmp_path / "s", seed)}
    assert max(int(k[1:3]) for k in keys) >= 10   # drawn across the whole set, not only the first objects


def _preview_keys(folder, seed):
    from render.inspect_shards import _choose
    return sorted(_choose(sorted(folder.glob("*.tar")), 4, True, seed, []))
