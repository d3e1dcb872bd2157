"""View pairs streamed from webdataset shards: shard lists, decoding, object split, shuffling and batching."""
import dataclasses
import glob
import itertools
import json
import os
import random
import re
import signal
import urllib.error
import urllib.request
import warnings
from collections import Counter
from dataclasses import dataclass

import braceexpand
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_expander

from datasets.camera import camera_of
from datasets.images import load_image, to_tensor
from datasets.split import in_split
from render.shards import uid_of_key   # the key format is declared where shards are written

URL_PATTERN = re.compile(r"^([a-z][a-z0-9+.-]*://|pipe:)", re.IGNORECASE)
SKIPPED = Counter()  # distinct corrupt shards and samples skipped by this process ("shards", "samples")
SKIPPED_NAMES = {"shards": {}, "samples": {}}  # their names, in order (dicts as ordered sets): each counts once
URL_TIMEOUT_S = 60  # an http(s) shard whose server sends nothing for this long is skipped


@dataclass(frozen=True)
class DataSpec:
    """Which pairs to read and how to decode them: shards (a folder, glob, {a..b} pattern or URL, or a list of
    them), the image side, the background behind transparent pixels, and the split by object."""
    shards: object
    image_size: int
    background: object = "white"
    split: str = "all"           # "all", "train" or "val" (see datasets.split)
    val_fraction: float = 0.05

    @classmethod
    def of_run(cls, config: dict, split: str) -> "DataSpec":
        """The `split` pairs of a run's (or weights folder's) config, at its model's image size."""
        data = config["data"]
        return cls(data["shards"], config["model"]["image_size"], data["background"], split, data["val_fraction"])


class SkippedDataWarning(UserWarning):
    """A corrupt shard or sample was skipped (the message counts how many so far in this process)."""


def resolve_shards(spec) -> list:
    """Expand folders (their *.tar), globs, brace patterns and http(s) URLs into a sorted-per-item list of shards."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    shards = []
    for item in items:
        for name in braceexpand.braceexpand(str(item)):
            if URL_PATTERN.match(name):
                shards.append(name)
            elif os.path.isdir(name):
                shards += sorted(glob.glob(os.path.join(glob.escape(name), "*.tar")))
            elif glob.has_magic(name):
                shards += sorted(p for p in glob.glob(name) if os.path.isfile(p))
            elif os.path.isfile(name):
                shards.append(name)
            else:
                raise FileNotFoundError(f"no such shard or folder: {name}")
    shards = list(dict.fromkeys(shards))  # drop duplicates, keep order
    if not shards:
        raise FileNotFoundError(f"no shards found in {spec}: expected *.tar files (a folder, glob, {{a..b}} pattern or URL)")
    return shards


def _skip(kind: str, what: str, reason) -> bool:
    """Count and report a corrupt shard or sample the first time it is met (each epoch meets it again); returning
    True tells webdataset to carry on."""
    if what not in SKIPPED_NAMES[kind]:
        SKIPPED_NAMES[kind][what] = str(reason)
        SKIPPED[kind] += 1
        warnings.warn(f"skipped corrupt {kind[:-1]} {what}: {reason} ({SKIPPED[kind]} {kind} skipped so far)",
                      SkippedDataWarning, stacklevel=2)
    return True


def _open_shard(url: str):
    """A readable stream of a shard: http(s) through urllib with a timeout (webdataset's curl pipe waits forever on a
    silent server and raises from close() on a 404), anything else through webdataset's gopen."""
    if url.lower().startswith(("http://", "https://")):
        try:
            return urllib.request.urlopen(url, timeout=URL_TIMEOUT_S)
        except urllib.error.HTTPError as e:
            raise OSError(f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise OSError(f"no answer within {URL_TIMEOUT_S} s" if isinstance(reason, TimeoutError)
                          else f"cannot download: {reason}") from None
    return gopen(url)


def _shard_error(exn: Exception) -> bool:
    """webdataset handler: a shard that cannot be opened or read stops that shard only."""
    urls = [a for a in exn.args[1:] if isinstance(a, str)]
    return _skip("shards", urls[-1] if urls else "?", str(exn.args[0]) if exn.args else type(exn).__name__)


def _image_field(sample: dict, name: str) -> bytes:
    """The bytes of src.* / tgt.* (PNG by the shard format; any image extension accepted)."""
    for key, value in sample.items():
        if key.split(".")[0] == name and isinstance(value, bytes) and key != "json":
            return value
    raise KeyError(f"no {name} image")


def read_meta(sample: dict) -> dict:
    """Parse the json field of a raw shard sample; the uid falls back to the key without its pair suffix."""
    meta = json.loads(sample["json"].decode("utf-8"))
    meta.setdefault("uid", uid_of_key(sample["__key__"]))
    meta["uid"] = str(meta["uid"])
    return meta


def decode_pair(sample: dict, meta: dict, image_size: int, background) -> dict:
    """Decode one raw shard sample into the model's tensors."""
    return {
        "src": to_tensor(load_image(_image_field(sample, "src")), image_size, background),
        "tgt": to_tensor(load_image(_image_field(sample, "tgt")), image_size, background),
        "camera": camera_of(meta),
        "uid": meta["uid"],
        "key": sample["__key__"],
        "meta": meta,
    }


def _shard_files(shards):
    """The files of each shard in turn; a shard that cannot be opened or read is skipped, and every file is closed."""
    for url in shards:
        try:
            stream = _open_shard(url)
        except Exception as e:  # noqa: BLE001 - whatever the opener raises (missing file, curl, permissions)
            _skip("shards", url, e)
            continue
        try:
            yield from tar_file_expander([{"url": url, "stream": stream}], handler=_shard_error)
        finally:
            try:
                stream.close()
            except OSError as e:  # a pipe opener reports its command's failure here
                _skip("shards", url, e)


def _raw_samples(shards, split, val_fraction):
    """Undecoded samples of the given shards that belong to the split, with their parsed metadata."""
    for sample in group_by_keys(_shard_files(shards), handler=_shard_error):
        try:
            meta = read_meta(sample)
        except (KeyError, ValueError, UnicodeDecodeError) as e:
            _skip("samples", f"{sample.get('__key__')} in {sample.get('__url__')}", f"bad json ({e})")
            continue
        if in_split(meta["uid"], split, val_fraction):
            yield sample, meta


def _decoded(raw, image_size, background):
    """Decode raw samples, skipping (and counting) the ones whose images or fields are broken."""
    for sample, meta in raw:
        try:
            yield decode_pair(sample, meta, image_size, background)
        except (KeyError, ValueError, TypeError) as e:
            _skip("samples", f"{sample['__key__']} in {sample.get('__url__')}", e)


def iter_pairs(data: DataSpec):
    """Every pair of the data (one pass, shard order then file order, no shuffling) as tensors and metadata."""
    in_split("", data.split, data.val_fraction)  # validate the arguments before touching any file
    yield from _decoded(_raw_samples(resolve_shards(data.shards), data.split, data.val_fraction), data.image_size,
                        data.background)


def _slot():
    """This reader's (index, count) among all DataLoader workers of all distributed ranks."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    return rank * workers + worker, world * workers


def _shuffled(items, size, rng):
    """Shuffle a stream through a buffer of up to `size` items (size <= 1: keep the order).

    Output starts once a tenth of the buffer is full and the buffer keeps growing (one out per two in) until it is
    full, so the first batch does not wait for `size` samples to be read.
    """
    if size <= 1:
        yield from items
        return
    buffer, initial = [], max(2, size // 10)
    for count, item in enumerate(items):
        buffer.append(item)
        if len(buffer) < initial or (len(buffer) < size and count % 2 == 0):
            continue
        i = rng.randrange(len(buffer))
        buffer[i], buffer[-1] = buffer[-1], buffer[i]
        yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


def _batches(pairs, batch_size, reader, shards=()):
    """Stack pairs into batches of exactly batch_size; each carries its reader's running count of skipped data and
    the names skipped since its previous batch (readers meet the same shard in different epochs: the trainer counts
    the union)."""
    sent = {kind: 0 for kind in SKIPPED_NAMES}
    while True:
        chunk = list(itertools.islice(pairs, batch_size))
        if len(chunk) < batch_size:
            return
        new = {kind: [n for n in list(names)[sent[kind]:] if n.rsplit(" in ", 1)[-1] in shards]   # ours only
               for kind, names in SKIPPED_NAMES.items()}
        sent = {kind: len(names) for kind, names in SKIPPED_NAMES.items()}
        yield {
            "skipped_new": new,
            "src": torch.stack([p["src"] for p in chunk]),
            "tgt": torch.stack([p["tgt"] for p in chunk]),
            "camera": torch.stack([p["camera"] for p in chunk]),
            "reader": reader,
            "skipped": torch.tensor([SKIPPED["shards"], SKIPPED["samples"]]),
        }


class PairStream(IterableDataset):
    """An endless stream of training batches; every worker of every rank reads its own part of each epoch."""

    def __init__(self, data: DataSpec, batch_size, seed, shuffle_buffer):
        super().__init__()
        self.shards, self.image_size, self.batch_size = list(data.shards), data.image_size, batch_size
        self.background, self.split, self.val_fraction = data.background, data.split, data.val_fraction
        self.seed, self.shuffle_buffer = seed, shuffle_buffer

    def _epochs(self, slot, slots):
        """Raw samples of this slot, epoch after epoch.

        Normally each reader takes whole shards; with fewer shards than readers (or a reader whose shards hold nothing
        of the split) every reader scans all shards and keeps every n-th sample; with fewer samples than readers,
        all readers take all samples (duplicates do no harm to training, idle readers would stall it).
        """
        share = "shards" if len(self.shards) >= slots else "samples"
        for epoch in itertools.count():
            order = list(self.shards)
            if self.shuffle_buffer > 1:
                random.Random(f"{self.seed}-epoch-{epoch}").shuffle(order)  # same order on every rank and worker
            if share == "shards":
                mine = _raw_samples(order[slot::slots], self.split, self.val_fraction)
            elif share == "samples":
                mine = itertools.islice(_raw_samples(order, self.split, self.val_fraction), slot, None, slots)
            else:
                mine = _raw_samples(order, self.split, self.val_fraction)
            found = False
            for item in mine:
                found = True
                yield item
            if not found and share == "all":
                last = next(reversed(SKIPPED_NAMES["shards"].items()), None)
                why = f"; last skipped: {last[0]}: {last[1]}" if last else ""
                raise ValueError(f"no usable {self.split} samples in {len(order)} shards "
                                 f"({SKIPPED['shards']} unreadable shards, {SKIPPED['samples']} corrupt samples skipped"
                                 f"{why})")
            if not found:
                share = "samples" if share == "shards" else "all"

    def __iter__(self):
        slot, slots = _slot()
        rng = random.Random(f"{self.seed}-slot-{slot}")
        raw = _shuffled(self._epochs(slot, slots), self.shuffle_buffer, rng)  # shuffle bytes, not decoded tensors
        return _batches(_decoded(raw, self.image_size, self.background), self.batch_size, slot, set(self.shards))


def _worker_init(_):
    """Loader workers decode images with one thread each (the training step needs the cores); Ctrl-C is for the
    main process, which saves a checkpoint while its workers keep serving."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(data: DataSpec, batch_size, workers=2, seed=0, shuffle_buffer=1000):
    """An endless iterable of batches {"src", "tgt": [B,3,H,W] in [-1,1], "camera": [B,4]} for training.

    Shards are reshuffled every epoch and split across DataLoader workers and distributed ranks; samples are mixed
    through a buffer of `shuffle_buffer` raw samples (<= 1 keeps the shard order: deterministic, for tests).
    No flips or other augmentation: a mirrored pair would teach the opposite turn direction.
    """
    in_split("", data.split, data.val_fraction)
    stream = PairStream(dataclasses.replace(data, shards=resolve_shards(data.shards)), batch_size, seed, shuffle_buffer)
    return DataLoader(stream, batch_size=None, num_workers=workers, worker_init_fn=_worker_init,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed))
