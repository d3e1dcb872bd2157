"""Folders of views taken a fixed step apart (000.png, 001.png, ...) -> every consecutive pair, last to first too."""
import hashlib
import re

from render.repack import (IMAGE_SUFFIXES, REPACK_DEFAULTS, RepackTask, check_size, existing_dir, listing, photo_json, photo_view,
                           run_repack)
from render.shards import sanitise_uid


def natural_key(name):
    """Sort key that puts 2.png before 10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def find_rings(root):
    """(uid, folder, sorted image paths) for `root` and every folder below it that directly holds images."""
    # hidden folders (.ipynb_checkpoints, .thumbnails) hold copies, not views
    folders = [root] + sorted(p for p in root.rglob("*")
                              if p.is_dir() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    rings, seen = [], set()
    for folder in folders:
        images = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                        key=lambda p: natural_key(p.name))
        if not images:
            continue
        uid = sanitise_uid(folder.name if folder == root else folder.relative_to(root).as_posix())
        if uid in seen:   # a/b and a_b sanitise alike: keep both, apart
            uid += "-" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
        seen.add(uid)
        rings.append((uid, folder, images))
    return rings


def ring_pairs(uid, folder, images, step_deg, size):
    """(src index, tgt index, json) for view i -> i+1; the wrap-around pair only when the views close a full turn."""
    count = len(images)
    closed = abs(count * step_deg - 360.0) < 1e-6
    pairs = []
    for i in range(count if closed else count - 1):
        j = (i + 1) % count
        src = photo_view((i * step_deg) % 360.0, file=images[i].name)
        tgt = photo_view((j * step_deg) % 360.0, file=images[j].name)
        pairs.append((i, j, photo_json(uid, "ring", i, size, step_deg, src, tgt, path=str(folder))))
    return pairs


def repack_ring(root, out, step_deg=REPACK_DEFAULTS["step_deg"], size=REPACK_DEFAULTS["size"], workers=None,
                shard_size=REPACK_DEFAULTS["shard_size"]):
    """Write every consecutive view pair of each ring folder under `root` as shards in `out`."""
    check_size(size)
    if not 0 < step_deg < 360:
        raise ValueError(f"--step-deg must lie in (0, 360), got {step_deg}")
    root = existing_dir(root, "ring folder")
    rings = find_rings(root)
    if not rings:
        raise ValueError(f"no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) in {root} or its sub-folders")
    short = [uid for uid, _, images in rings if len(images) < 2]
    open_rings = [uid for uid, _, images in rings if len(images) >= 2 and abs(len(images) * step_deg - 360) > 1e-6]
    tasks = [RepackTask(uid, images, ring_pairs(uid, folder, images, step_deg, size))
             for uid, folder, images in rings if len(images) >= 2]
    notes = [f"{len(short)} folders with fewer than 2 images" + (f": {listing(short)}" if short else "")]
    if open_rings:
        notes.append(f"{len(open_rings)} folders whose views do not make a full turn at {step_deg:g} degrees "
                     f"(no last-to-first pair): {listing(open_rings)}")
    job = {"source": "ring", "size": size, "step_deg": step_deg}
    summary = run_repack(tasks, out, size, job, workers, shard_size, "repack ring", notes)
    summary.update(too_few_images=short, open_rings=open_rings)
    return summary
