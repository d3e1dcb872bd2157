"""Shard writer: webdataset round trip, resume bookkeeping, foreign folders, settings mismatch, info and preview."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from render.inspect_shards import shards_info, shards_preview
from render.pairs import encode_png
from render.shards import Failure, ShardSink, finished_uids, read_jsonl, sample_key, sanitise_uid, write_objects
from shard_reading import read_shards


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
