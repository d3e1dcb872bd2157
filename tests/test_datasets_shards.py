"""Shard resolution and streaming (the shards come from conftest.write_shards)."""
import tarfile

import pytest
import torch
import webdataset as wds

from conftest import sample_record, write_shards
from datasets.stream import SKIPPED, DataSpec, SkippedDataWarning, iter_pairs, make_loader, resolve_shards


def test_resolve_shards_folder_glob_braces_urls(tmp_path):
    folder = write_shards(tmp_path / "d", objects=4, pairs=1, per_shard=1)
    (tmp_path / "d" / "failures.jsonl").write_text("")
    four = [str(tmp_path / "d" / f"shard-r000-{i:06d}.tar") for i in range(4)]
    assert resolve_shards(folder) == four
    assert resolve_shards(str(tmp_path / "d" / "*.tar")) == four
    assert resolve_shards(str(tmp_path / "d" / "shard-r000-{000001..000002}.tar")) == four[1:3]
    assert resolve_shards([folder, four[0]]) == four
    assert resolve_shards("http://127.0.0.1:1/s-{0..1}.tar") == ["http://127.0.0.1:1/s-0.tar", "http://127.0.0.1:1/s-1.tar"]
    with pytest.raises(FileNotFoundError, match="no shards found"):
        resolve_shards(str(tmp_path / "d" / "*.none"))
    with pytest.raises(FileNotFoundError, match="no such shard"):
        resolve_shards(str(tmp_path / "missing"))


def test_iter_pairs_order_and_contents(tmp_path):
    folder = write_shards(tmp_path, objects=3, pairs=2, per_shard=4)
    pairs = list(iter_pairs(DataSpec(folder, 16)))
    assert [p["key"] for p in pairs] == ["obj000_00", "obj000_01", "obj001_00", "obj001_01", "obj002_00", "obj002_01"]
    first = pairs[0]
    assert first["uid"] == "obj000" and first["meta"]["source"] == "procedural"
    assert first["src"].shape == (3, 16, 16) and first["src"].min() >= -1 and first["src"].max() <= 1
    assert first["src"][:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # transparent corner composited on white
    black = next(iter_pairs(DataSpec(folder, 16, background="black")))
    assert black["src"][:, 0, 0].tolist() == [-1.0, -1.0, -1.0]


def test_loader_batches_split_and_no_flip(tmp_path):
    folder = write_shards(tmp_path, objects=6, pairs=2, per_shard=4)
    loader = make_loader(DataSpec(folder, 32, split="train", val_fraction=0.0), batch_size=4, workers=0,
                         shuffle_buffer=8)
    batches = [b for b, _ in zip(loader, range(6))]  # 24 pairs = two epochs: the stream goes on
    assert batches[0]["src"].shape == (4, 3, 32, 32) and batches[0]["camera"].shape == (4, 4)
    for b in batches:
        # the box is left of centre in src and right of centre in tgt, as written: nothing mirrored it
        dark = (b["src"].mean(1) < 0.9).float().mean(1)  # [B, W] fraction of object pixels per column
        assert (dark[:, :16].sum(1) > dark[:, 16:].sum(1)).all()
        dark = (b["tgt"].mean(1) < 0.9).float().mean(1)
        assert (dark[:, 16:].sum(1) > dark[:, :16].sum(1)).all()
    assert torch.allclose(batches[0]["camera"][0], torch.tensor([0.8660254, 0.5, 0.0, 1.0]), atol=1e-6)


def test_loader_workers_split_shards_without_duplicates(tmp_path):
    folder = write_shards(tmp_path, objects=8, pairs=1, per_shard=2)
    seen = []
    loader = make_loader(DataSpec(folder, 16, split="train", val_fraction=0.0), batch_size=2, workers=2,
                         shuffle_buffer=0)
    for batch, _ in zip(loader, range(4)):  # 8 samples in one epoch over both workers
        seen += [round(float(v), 4) for v in batch["src"][:, :, 8, 5].sum(1)]  # the box colour identifies the object
    assert len(set(seen)) == 8


def test_corrupt_shard_and_sample_are_skipped_and_counted(tmp_path):
    folder = write_shards(tmp_path, objects=4, pairs=1, per_shard=2)
    good = sample_record("bad001", 0, 32, 99)
    with wds.TarWriter(str(tmp_path / "shard-r000-000100.tar")) as sink:
        sink.write(dict(good, **{"src.png": b"\x89PNG\r\n\x1a\nbroken"}))  # an undecodable image
        sink.write(sample_record("ok001", 0, 32, 5))
    (tmp_path / "shard-r000-000200.tar").write_bytes(b"this is not a tar file at all" * 40)
    with open(tmp_path / "shard-r000-000000.tar", "rb") as f:  # a truncated copy of a good shard
        (tmp_path / "shard-r000-000300.tar").write_bytes(f.read()[:1500])
    before = SKIPPED.copy()
    with pytest.warns(SkippedDataWarning, match="skipped corrupt"):
        keys = [p["key"] for p in iter_pairs(DataSpec(folder, 16))]
    assert "bad001_00" not in keys and "ok001_00" in keys and keys.count("obj000_00") == 1
    assert SKIPPED["samples"] - before["samples"] >= 1 and SKIPPED["shards"] - before["shards"] >= 1
    counted = SKIPPED.copy()
    loader = make_loader(DataSpec(folder, 16, split="train", val_fraction=0.0), batch_size=4, workers=0,
                         shuffle_buffer=0)
    batches = [b for b, _ in zip(loader, range(3))]  # 12 samples: past every broken shard, into a second epoch
    assert batches[-1]["src"].shape[0] == 4 and batches[-1]["skipped"].sum() >= 2
    assert SKIPPED == counted   # met again in this process (and in a second epoch): not counted again


def test_mixed_sources_train_together(tmp_path):
    write_shards(tmp_path / "renders", objects=2, pairs=1, per_shard=2, prefix="r")
    photos = write_shards(tmp_path / "mvc", objects=2, pairs=1, per_shard=2, prefix="m", source="mvc")
    for path in resolve_shards(photos):  # photos: opaque, no camera matrix, no field of view
        with tarfile.open(path) as tar:
            assert tar.getnames()
    pairs = list(iter_pairs(DataSpec([str(tmp_path / "renders"), photos], 16)))
    assert {p["meta"]["source"] for p in pairs} == {"procedural", "mvc"}
    batch = next(iter(make_loader(DataSpec([str(tmp_path / "renders"), photos], 16, split="train", val_fraction=0.0),
                                  4, workers=0)))
    assert batch["src"].shape == (4, 3, 16, 16)


def test_empty_split_is_a_clear_error(tmp_path):
    folder = write_shards(tmp_path, objects=2, pairs=1, per_shard=2)
    with pytest.raises(ValueError, match="no usable train samples"):
        next(iter(make_loader(DataSpec(folder, 16, split="train", val_fraction=1.0), 2, workers=0)))


def first_epoch_keys(folder, slot, slots, monkeypatch):
    """Keys one reader (rank x worker slot) reads in the first epoch."""
    from datasets import stream as stream_module

    monkeypatch.setattr(stream_module, "_slot", lambda: (slot, slots))
    stream = stream_module.PairStream(DataSpec(resolve_shards(folder), 8, split="all", val_fraction=0.0), 1, 0, 0)
    keys = []
    for (sample, _meta), _ in zip(stream._epochs(slot, slots), range(1000)):
        if sample["__key__"] in keys:
            break  # second epoch
        keys.append(sample["__key__"])
    return keys


def test_ranks_read_disjoint_shares_of_an_epoch(tmp_path, monkeypatch):
    many = write_shards(tmp_path / "many", objects=12, pairs=1, per_shard=2, size=8)  # 6 shards, 4 readers
    few = write_shards(tmp_path / "few", objects=6, pairs=1, per_shard=3, size=8)  # 2 shards, 4 readers
    for folder, total in ((many, 12), (few, 6)):
        shares = [first_epoch_keys(folder, slot, 4, monkeypatch) for slot in range(4)]
        assert all(shares), shares  # nobody idles
        flat = [k for share in shares for k in share]
        assert len(flat) == len(set(flat)) == total


def test_shuffle_buffer_permutes_and_starts_early():
    import random

    from datasets.stream import _shuffled

    out = list(_shuffled(iter(range(100)), 20, random.Random(0)))
    assert sorted(out) == list(range(100)) and out != list(range(100))
    consumed = []

    def source():
        for i in range(5000):
            consumed.append(i)
            yield i

    first = next(_shuffled(source(), 1000, random.Random(0)))
    assert len(consumed) == 100 and 0 <= first < 100  # a tenth of the buffer, not all 1000 samples
