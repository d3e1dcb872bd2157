"""The object split is deterministic (across processes), disjoint, and close to the requested fraction."""
import subprocess
import sys

import pytest

from datasets.stream import DataSpec, iter_pairs
from datasets.split import in_split, is_val
from conftest import write_shards


def test_split_is_stable_disjoint_and_near_the_fraction():
    uids = [f"object-{i}" for i in range(4000)]
    val = {u for u in uids if is_val(u, 0.05)}
    assert 150 < len(val) < 250
    assert val == {u for u in uids if in_split(u, "val", 0.05)}
    assert not val & {u for u in uids if in_split(u, "train", 0.05)}
    assert val <= {u for u in uids if is_val(u, 0.1)}  # growing the fraction only adds objects
    assert not any(is_val(u, 0.0) for u in uids) and all(is_val(u, 1.0) for u in uids)
    with pytest.raises(ValueError):
        is_val("x", 1.5)
    # another interpreter (with its own hash seed) picks the same objects
    code = "from datasets.split import is_val; print(sum(is_val(f'object-{i}', 0.05) for i in range(4000)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123"}, cwd=__file__.rsplit("/tests/", 1)[0])
    assert int(out.stdout) == len(val)


def test_split_of_shards_keeps_all_views_of_an_object_together(tmp_path):
    folder = write_shards(tmp_path, objects=40, pairs=2, per_shard=16, size=8)
    train = list(iter_pairs(DataSpec(folder, 8, split="train", val_fraction=0.25)))
    val = list(iter_pairs(DataSpec(folder, 8, split="val", val_fraction=0.25)))
    assert train and val and len(train) + len(val) == 80
    assert not {p["uid"] for p in train} & {p["uid"] for p in val}
    assert all(len([p for p in val if p["uid"] == u]) == 2 for u in {p["uid"] for p in val})
    with pytest.raises(ValueError, match="unknown split"):
        list(iter_pairs(DataSpec(folder, 8, split="test")))
