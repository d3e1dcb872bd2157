"""Repack existing photos into pair shards: fit images to a square, write resumable shards, print a summary."""
import json
import math
import multiprocessing as mp
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from render.shards import Failure, ShardSink, encode_png, failed_note, sample_key

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
WHITE = (255, 255, 255)
# The repack commands' defaults, declared once (cli.py reads them; this module imports no torch).
REPACK_DEFAULTS = {
    "size": 256, "shard_size": 1000,
    "cond_view": "1", "target_view": "3",   # MVC: the original project paired view 1 -> view 3
    "delta_deg": 60.0,   # MVC records no angles; the original project used its 1 -> 3 pairs as the 60-degree turn
    "step_deg": 60.0,    # ring: six views once round
}


@dataclass
class RepackTask:
    """One object to repack: its image files and the pairs to write, each (src index, tgt index, json dict)."""
    uid: str
    paths: list
    pairs: list


def photo_json(uid, source, pair, size, delta_azimuth_deg, src, tgt, **extra):
    """The sample `json` of a photo pair: the shard format's fields, with nulls where a photo has no camera."""
    meta = {"uid": uid, "source": source, "pair": pair, "delta_azimuth_deg": delta_azimuth_deg, "fov_deg": None,
            "size": size, "src": src, "tgt": tgt}
    meta.update(extra)
    return meta


def photo_view(azimuth_deg=None, **extra):
    """A `src`/`tgt` entry for a photo: azimuth if known, no elevation, radius or camera matrix."""
    return {"azimuth_deg": azimuth_deg, "elevation_deg": None, "radius": None, "cam2world": None, **extra}


def fit_square(path, size):
    """Image file -> size x size RGBA: aspect kept, padded on white (transparent white if it has alpha)."""
    with Image.open(path) as image:
        width, height = image.size
        scale = size / max(width, height)
        fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
        if image.format == "JPEG" and scale < 0.5:
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale far faster than full size; draft keeps >= the fitted size.
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()   # raises on truncated or corrupt data
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    if image.size != fitted:
        image = image.resize(fitted, Image.Resampling.LANCZOS, reducing_gap=3.0)
    canvas = Image.new("RGBA", (size, size), WHITE + ((0,) if has_alpha else (255,)))
    canvas.paste(image, ((size - fitted[0]) // 2, (size - fitted[1]) // 2))
    return canvas


def repack_object(task, size):
    """(uid, samples) for one task, or (uid, Failure) naming the first image that cannot be read."""
    pngs = []
    for path in task.paths:
        try:
            pngs.append(encode_png(fit_square(path, size)))
        except Exception as e:   # any decoder error means the same to the user: this file cannot be used
            return task.uid, Failure(f"unreadable image: {type(e).__name__}: {str(e)[:200]}", str(path))
    samples = [{"__key__": sample_key(task.uid, meta["pair"]), "src.png": pngs[src], "tgt.png": pngs[tgt],
                "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")} for src, tgt, meta in task.pairs]
    return task.uid, samples


@contextmanager
def _mapper(workers):
    """A map function: this process for one worker, else a pool of processes (created before any thread starts)."""
    if workers <= 1:
        yield map
        return
    # fork where there is one: ~0.05 s to start against seconds for spawn, and decoding needs only PIL
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers) as pool:
        yield partial(pool.imap, chunksize=4)


def check_size(size):
    """Reject image sizes the model cannot use."""
    if size < 8:
        raise ValueError(f"--size must be at least 8, got {size}")


def existing_dir(root, what):
    """`root` as a Path, or a one-line error if it is missing or not a folder."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{what} {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{what} {root} is not a folder")
    return root


def run_repack(tasks, out, size, job, workers=None, shard_size=1000, label="repack", notes=()):
    """Write `tasks` into shards in `out`, skipping finished objects; print a summary line and return it as a dict."""
    started = time.time()
    with ShardSink(out, rank=0, shard_size=shard_size, job=job) as sink:
        todo = [task for task in tasks if task.uid not in sink.finished]
        images = 0
        with _mapper(min(workers or os.cpu_count() or 1, len(todo))) as mapper, \
                tqdm(total=len(todo), desc=label, unit="obj", file=sys.stderr, disable=not todo) as bar:
            for task, (uid, result) in zip(todo, mapper(partial(repack_object, size=size), todo)):
                if isinstance(result, Failure):
                    sink.fail(uid, result)
                else:
                    sink.add(uid, result)
                images += len(task.paths)
                bar.update(1)
    seconds = time.time() - started
    summary = {"objects": sink.objects_written, "samples": sink.samples_written, "shards": sink.shards_written,
               "failed": sink.objects_failed, "skipped": len(tasks) - len(todo), "images": images,
               "seconds": round(seconds, 2), "images_per_s": round(images / max(seconds, 1e-9), 1), "out": str(out)}
    print(f"{label}: {summary['objects']} objects ({summary['samples']} pairs, {summary['shards']} shards) from "
          f"{images} images in {seconds:.1f} s = {summary['images_per_s']:.1f} images/s; "
          f"{failed_note(summary['failed'], out)}, {summary['skipped']} already done" + "".join(f"; {n}" for n in notes) + f" -> {out}")
    return summary


def listing(names, limit=10):
    """'a, b, c' or 'a, b, ... (+N more)': short enough for a summary line."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit} more)" if len(names) > limit else "")
