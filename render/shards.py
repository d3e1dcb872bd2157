"""Resumable shard writing: temp name + rename, a progress record per rank, failures.jsonl, sample keys and PNGs;
shared by render and repack."""
import io
import json
import os
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARD_RE = re.compile(r"shard-r(\d{3})-(\d{6})\.tar$")
PROGRESS_RE = re.compile(r"progress-r(\d{3})\.jsonl$")
FAILURES = "failures.jsonl"
JOB = "job.json"
SAMPLE_SETTINGS = ("source", "size", "delta_azimuth_deg", "seed", "fov_deg")   # in job.json and every sample json
PNG_COMPRESS_LEVEL = 1   # zlib level 1: files ~10% larger than the default, encoding several times faster
OWN_FILE_RE = re.compile(r"(shard-r\d{3}-\d{6}\.tar(\.tmp)?|progress-r\d{3}\.jsonl|failures\.jsonl|job\.json)$")


@dataclass
class Failure:
    """Why an object produced no samples."""
    reason: str
    path: str | None = None


def failed_note(count, out_dir):
    """'0 failed', or '2 failed (see OUT/failures.jsonl)': point at the file only when it has something."""
    return f"{count} failed" + (f" (see {Path(out_dir) / FAILURES})" if count else "")


def shard_name(rank, index):
    """File name of shard `index` written by `rank`: unique per writer, so reruns and ranks never collide."""
    return f"shard-r{rank:03d}-{index:06d}.tar"


def sanitise_uid(uid):
    """A uid as used in sample keys: only [A-Za-z0-9_-] (webdataset splits keys at dots)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(uid))


def sample_key(uid, pair):
    """The `__key__` of pair `pair` of object `uid`."""
    return f"{sanitise_uid(uid)}_{pair:02d}"


def uid_of_key(key):
    """The (sanitised) uid in a sample key: sample_key's inverse."""
    return key.rsplit("_", 1)[0]


def encode_png(image):
    """PNG bytes at zlib level 1 of an RGBA uint8 array (render: rows unfiltered) or a PIL image (repack: PIL's filters).

    Renders are written out rather than through PIL, which spent ~0.2-1 ms per small image choosing row filters: at
    64 px that was a tenth of the whole job, for files of about the same size. Photos keep PIL's filters, without
    which their files grew 8-64% (three 256 px crops of docs/images/photo_prep.png). Every reader decodes both.
    """
    if not isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue()
    rgba = image
    h, w = rgba.shape[:2]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), np.ascontiguousarray(rgba, np.uint8).reshape(h, w * 4)], 1)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL)) + chunk(b"IEND", b""))


def read_jsonl(path):
    """Rows of a JSON-lines file; a line cut short by a kill is skipped."""
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


def append_jsonl(path, row):
    """Append one row in a single write (atomic between processes on a local disk), after any torn last line."""
    line = json.dumps(row, ensure_ascii=False) + "\n"
    with open(path, "ab") as f:
        if f.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    line = "\n" + line
        f.write(line.encode("utf-8"))


def check_out_dir(out_dir):
    """Create `out_dir` or make sure it holds only shard-job files: never mix our shards with someone else's files."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out_dir.iterdir() if not OWN_FILE_RE.match(p.name) or p.is_dir())
    if foreign:
        raise FileExistsError(f"{out_dir} holds files that are not shards of this tool ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}): choose an empty or new --out folder")
    return out_dir


def finished_records(out_dir):
    """Progress records of all ranks whose shard exists: a record is written just before its shard's rename."""
    out_dir = Path(out_dir)
    records = []
    for path in sorted(out_dir.glob("progress-r*.jsonl")):
        records += [r for r in read_jsonl(path) if (out_dir / r.get("shard", "")).is_file()]
    return records


def finished_uids(out_dir):
    """Uids that need no more work: written into a complete shard, or recorded as failed."""
    done = {uid for record in finished_records(out_dir) for uid in record["uids"]}
    return done | {row.get("uid") for row in read_jsonl(Path(out_dir) / FAILURES)}


class ShardSink:
    """Writes whole objects into shards of about `shard_size` samples; every object lands in exactly one shard."""

    def __init__(self, out_dir, rank=0, shard_size=1000, job=None):
        self.out_dir = check_out_dir(out_dir)
        self.rank, self.shard_size = rank, max(1, shard_size)
        self._check_job(job)
        self.progress_path = self.out_dir / f"progress-r{rank:03d}.jsonl"
        for stale in self.out_dir.glob(f"shard-r{rank:03d}-*.tar.tmp"):
            stale.unlink()   # a shard cut short by a kill: its objects are not recorded, so they are redone
        self.finished = finished_uids(self.out_dir)
        used = [int(m.group(2)) for p in self.out_dir.iterdir() if (m := SHARD_RE.match(p.name))
                and int(m.group(1)) == rank]
        used += [int(SHARD_RE.match(r["shard"]).group(2)) for r in read_jsonl(self.progress_path)
                 if SHARD_RE.match(r.get("shard", ""))]
        self.next_index = max(used, default=-1) + 1
        self.writer = None
        self.shards_written = self.samples_written = self.objects_written = self.objects_failed = 0

    def _check_job(self, job):
        """Refuse to add to a folder rendered with other settings (mixed sizes or deltas would poison training)."""
        if job is None:
            return
        path = self.out_dir / JOB
        previous = None
        if path.exists():
            try:
                previous = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                previous = None
        if isinstance(previous, dict) and previous != job:
            changed = sorted(k for k in set(job) | set(previous) if job.get(k) != previous.get(k))
            raise ValueError(f"{self.out_dir} was written with other settings ({', '.join(changed)} differ): "
                             f"use the same options or another --out folder")
        if not isinstance(previous, dict):   # job.json lost or torn: the shards themselves say how they were made
            for shard in sorted(self.out_dir.glob("shard-r*.tar")):
                found = first_sample_settings(shard)
                changed = sorted(k for k in found if job.get(k, found[k]) != found[k])
                if changed:
                    raise ValueError(f"{shard} was written with other settings ({', '.join(changed)} differ: "
                                     + ", ".join(f"{k} {found[k]} there, {job[k]} now" for k in changed)
                                     + "): use the same options or another --out folder")
        tmp = path.with_name(f".{JOB}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(job, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def add(self, uid, samples):
        """Write all samples of one object (dicts with __key__, src.png, tgt.png, json), rolling shards as needed."""
        if self.writer is not None and self.count + len(samples) > self.shard_size:
            self._finish_shard()
        if self.writer is None:
            self.name = shard_name(self.rank, self.next_index)
            self.next_index += 1
            import webdataset as wds   # here, not at the top: it imports torch, which render workers never need
            self.writer = wds.TarWriter(str(self.out_dir / (self.name + ".tmp")), encoder=False)
            self.count, self.uids = 0, []
        for sample in samples:
            self.writer.write(sample)
        self.count += len(samples)
        self.uids.append(uid)
        self.finished.add(uid)
        self.objects_written += 1
        self.samples_written += len(samples)

    def fail(self, uid, failure):
        """Record an object that produced nothing in failures.jsonl, so reruns skip it and people can see why."""
        append_jsonl(self.out_dir / FAILURES, {"uid": uid, "path": failure.path, "reason": failure.reason})
        self.finished.add(uid)
        self.objects_failed += 1

    def _finish_shard(self):
        """Close the open shard, record its objects, then rename it into place."""
        self.writer.close()
        tmp = self.out_dir / (self.name + ".tmp")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        append_jsonl(self.progress_path, {"shard": self.name, "uids": self.uids, "samples": self.count})
        os.replace(tmp, self.out_dir / self.name)
        self.writer = None
        self.shards_written += 1

    def close(self):
        """Finish the open shard: every object added so far is then safe on disk."""
        if self.writer is not None:
            self._finish_shard()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def first_sample_settings(shard):
    """SAMPLE_SETTINGS of a shard's first sample, with `size` from its PNG header; {} if the shard is unreadable."""
    try:
        with tarfile.open(shard) as tar:
            found, width = {}, None
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if name.endswith(".json") and not found:
                    meta = json.loads(tar.extractfile(member).read())
                    found = {k: meta[k] for k in SAMPLE_SETTINGS if k in meta}
                elif name.endswith(".png") and width is None:
                    header = tar.extractfile(member).read(24)
                    width = struct.unpack(">I", header[16:20])[0] if header[:8] == b"\x89PNG\r\n\x1a\n" else None
                if found and width is not None:
                    break
    except (OSError, tarfile.TarError, ValueError, TypeError, UnicodeDecodeError):
        return {}
    if width is not None:
        found["size"] = width
    return found


def write_objects(out_dir, objects, rank=0, shard_size=1000, job=None, on_object=None):
    """Write an iterator of (uid, samples or Failure) into shards with all the bookkeeping; return the sink.

    Objects already finished in `out_dir` are skipped (use `finished_uids` to avoid producing them at all).
    `on_object(uid, result)` is called after each object, e.g. to advance a progress bar.
    """
    with ShardSink(out_dir, rank, shard_size, job) as sink:
        for uid, result in objects:
            if uid in sink.finished:
                continue
            if isinstance(result, Failure):
                sink.fail(uid, result)
            else:
                sink.add(uid, result)
            if on_object is not None:
                on_object(uid, result)
    return sink
