"""Read shards back as a user would, with webdataset; shared by the render and repack tests (no tests here)."""
import glob

import webdataset as wds


def read_shards(folder):
    """{key: sample} of every shard in `folder`, in shard order; fails on a duplicate key."""
    samples = {}
    with wds.WebDataset(sorted(glob.glob(f"{folder}/*.tar")), shardshuffle=False, empty_check=False) as dataset:
        for sample in dataset:
            assert sample["__key__"] not in samples, f"duplicate {sample['__key__']}"
            samples[sample["__key__"]] = sample
    return samples
