"""A render job: object list -> this rank's share -> worker processes -> shards, with a summary line."""
import hashlib
import os
import sys
import time

from tqdm import tqdm

from render.backend import resolve_backend
from render.shards import ShardSink, failed_note
from render.workers import WorkerPool


def resolve_rank(rank=None, world_size=None):
    """--rank/--world-size, defaulting to SLURM (SLURM_PROCID/SLURM_NTASKS), then torchrun (RANK/WORLD_SIZE)."""
    env = os.environ
    if rank is None:
        rank = int(env.get("SLURM_PROCID", env.get("RANK", 0)))
    if world_size is None:
        world_size = int(env.get("SLURM_NTASKS", env.get("WORLD_SIZE", 1)))
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world size, got rank {rank} of {world_size}")
    return rank, world_size


def rank_of(uid, world_size):
    """The rank that renders `uid`: a hash of the uid, so the split does not depend on list order or length."""
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "little") % world_size


def run_render_job(specs, out, settings, source, workers=None, rank=None, world_size=None):
    """Render this rank's share of `specs` into shards in `out`, skipping finished objects; return a summary dict."""
    resolve_backend(settings.backend)   # reject an unknown backend before starting anything
    rank, world_size = resolve_rank(rank, world_size)
    if settings.size < 8:
        raise ValueError(f"--size must be at least 8, got {settings.size}")
    if settings.pairs_per_object < 1:
        raise ValueError(f"--pairs-per-object must be at least 1, got {settings.pairs_per_object}")
    low, high = settings.elevation_range
    if not -90 < low <= high < 90:
        raise ValueError(f"elevation range must lie strictly within (-90, 90) with low <= high, got {low},{high}")
    unique = {}
    for spec in specs:
        unique.setdefault(spec.uid, spec)
    mine = [s for s in unique.values() if rank_of(s.uid, world_size) == rank]
    started, first_result = time.time(), None
    with ShardSink(out, rank, settings.shard_size, settings.job_record(source)) as sink:
        todo = [s for s in mine if s.uid not in sink.finished]
        skipped = len(mine) - len(todo)
        if todo:
            workers = workers or os.cpu_count() or 1
            with WorkerPool(min(workers, len(todo)), settings) as pool, \
                    tqdm(total=len(todo), desc=f"render {source}", unit="obj", file=sys.stderr) as bar:
                for uid, result in pool.run(todo, settings.timeout_s):
                    first_result = first_result or time.time()
                    if isinstance(result, list):
                        sink.add(uid, result)
                    else:
                        sink.fail(uid, result)
                    bar.update(1)
    seconds = time.time() - started
    summary = {"objects": sink.objects_written, "samples": sink.samples_written, "shards": sink.shards_written,
               "failed": sink.objects_failed, "skipped": skipped, "seconds": round(seconds, 2),
               "startup_seconds": round((first_result or time.time()) - started, 2),
               "pairs_per_s": round(sink.samples_written / max(seconds, 1e-9), 2), "rank": rank,
               "world_size": world_size, "out": str(out)}
    print(f"rendered {summary['objects']} objects ({summary['samples']} pairs, {summary['shards']} shards) in "
          f"{seconds:.1f} s = {summary['pairs_per_s']:.1f} pairs/s; {failed_note(summary['failed'], out)}, {skipped} already done; "
          f"rank {rank}/{world_size} -> {out}")
    return summary
