"""Read a shard folder: counts for `shards info`, a labelled source|target grid for `shards preview`.

Both skip what they cannot read (a file that is not a tar, a truncated shard, bad JSON, a corrupt PNG) and say so,
as training does, instead of stopping at the first broken file.
"""
import io
import json
import random
import tarfile
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw

from render.shards import FAILURES, read_jsonl, uid_of_key

PREVIEW_SIDE = 128   # pixels per image in the preview grid: 32/64 px renders are scaled up to be judged by eye
LABEL_H = 14         # height of a text line in the grid


def _shard_paths(directory):
    """The *.tar files of a folder; a missing folder, a file, or a folder without shards is an error."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory} does not exist")
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a folder")
    paths = sorted(directory.glob("*.tar"))
    if not paths:
        raise ValueError(f"no shards (*.tar) in {directory}")
    return paths


def _samples(paths, problems, wanted=None):
    """Yield (key, {field: bytes}) from tar shards in order; image bytes only for keys in `wanted` (None: all).

    A shard that cannot be read (not a tar, truncated) adds a line to `problems` and yields what came before the
    damage; the caller decides what a bad member means.
    """
    for path in paths:
        key, fields = None, {}
        try:
            end = path.stat().st_size
            with tarfile.open(path) as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    if member.offset_data + member.size > end:   # tarfile reads a cut-off member as short data
                        raise EOFError(f"truncated in {member.name}")
                    name = member.name.rsplit("/", 1)[-1]
                    member_key, _, field = name.partition(".")
                    if member_key != key and key is not None:
                        yield key, fields
                        fields = {}
                    key = member_key
                    if field == "json" or (field.endswith("png") and (wanted is None or key in wanted)):
                        fields[field] = tar.extractfile(member).read()
                if end < tar.offset + 2 * tarfile.BLOCKSIZE:   # cut between members: no end-of-archive blocks
                    raise EOFError("truncated: no end-of-archive marker")
        except (tarfile.TarError, OSError, EOFError) as e:
            problems.append(f"{path.name}: unreadable shard ({str(e).splitlines()[0].rstrip(':') or type(e).__name__})")
            continue   # the sample being read when the damage came is incomplete: drop it
        if key is not None:
            yield key, fields


def _meta(key, fields, problems):
    """A sample's json as a dict, or None (and a line in `problems`) when it is missing or not valid JSON."""
    try:
        meta = json.loads(fields["json"])
        if isinstance(meta, dict):
            return meta
    except KeyError:
        problems.append(f"{key}: no json")
        return None
    except (ValueError, UnicodeDecodeError):
        pass
    problems.append(f"{key}: bad json")
    return None


def _report(problems, limit=5):
    """Print the skipped files and samples, a few by name."""
    if problems:
        print(f"  skipped {len(problems)} unreadable item(s): " + "; ".join(problems[:limit])
              + ("; ..." if len(problems) > limit else ""))


def shards_info(directory, as_json=False):
    """Count objects, samples, shards, bytes and failures in `directory`; print them and return the dict."""
    paths = _shard_paths(directory)
    objects, sources, sizes, problems = set(), Counter(), Counter(), []
    samples = 0
    for key, fields in _samples(paths, problems, wanted=set()):
        meta = _meta(key, fields, problems)
        if meta is None:
            continue
        samples += 1
        objects.add(meta.get("uid", uid_of_key(key)))
        sources[meta.get("source", "?")] += 1
        sizes[meta.get("size", "?")] += 1
    failures = read_jsonl(Path(directory) / FAILURES)
    reasons = Counter(str(f.get("reason", "?")).split(":")[0] for f in failures)
    info = {"directory": str(directory), "shards": len(paths), "objects": len(objects), "samples": samples,
            "bytes": sum(p.stat().st_size for p in paths), "failures": len(failures),
            "failure_reasons": dict(reasons), "sources": dict(sources), "sizes": {str(k): v for k, v in sizes.items()},
            "unfinished_shards": len(list(Path(directory).glob("*.tar.tmp"))), "unreadable": problems}
    if as_json:
        print(json.dumps(info))
        return info
    print(f"{info['directory']}: {info['shards']} shards, {info['objects']} objects, {info['samples']} samples, "
          f"{info['bytes'] / 1e6:.1f} MB, {info['failures']} failures")
    if sources:
        print("  sources: " + ", ".join(f"{name} ({n} samples)" for name, n in sources.items()))
    if sizes:
        print("  image sizes: " + ", ".join(f"{size} px ({n} samples)" if size != "?" else f"unknown ({n} samples)"
                                            for size, n in sizes.items())
              + ("  <- mixed sizes: training resizes them all to the model's size" if len(sizes) > 1 else ""))
    if reasons:
        print("  failure reasons: " + ", ".join(f"{reason} ({n})" for reason, n in reasons.items()))
    if info["unfinished_shards"]:
        print(f"  {info['unfinished_shards']} unfinished shard(s) (*.tar.tmp): a job is running or was killed")
    _report(problems)
    return info


def _on_white(png_bytes, side):
    """Decode a PNG, composite it on white, scale to `side` pixels (nearest: the pixels stay visible)."""
    image = Image.open(io.BytesIO(png_bytes)).convert("RGBA")
    canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(canvas, image).convert("RGB").resize((side, side), Image.NEAREST)


def _choose(paths, count, shuffle, seed, problems):
    """Keys of the pairs to show: the first `count`, or `count` drawn at random (with `seed`) from the whole set."""
    if not shuffle:
        return None
    keys = [key for key, _ in _samples(paths, problems, wanted=set())]
    return set(random.Random(seed).sample(keys, min(count, len(keys))))


def shards_preview(directory, out, count=16, columns=4, side=PREVIEW_SIDE, shuffle=False, seed=0):
    """Draw `count` pairs (the first ones, or a random draw over all shards) as labelled source|target tiles."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    paths = _shard_paths(directory)
    problems = []
    wanted = _choose(paths, count, shuffle, seed, problems)
    problems = []   # the drawing pass meets the same damage again: report it once
    tiles = []
    for key, fields in _samples(paths, problems, wanted):
        if wanted is not None and key not in wanted:
            continue
        if "src.png" not in fields or "tgt.png" not in fields:
            problems.append(f"{key}: no src.png/tgt.png")
            continue
        try:
            images = _on_white(fields["src.png"], side), _on_white(fields["tgt.png"], side)
        except (OSError, ValueError, SyntaxError) as e:   # PIL's errors for truncated or corrupt PNGs
            problems.append(f"{key}: corrupt PNG ({type(e).__name__})")
            continue
        tiles.append((key, _meta(key, fields, problems) or {}, images))
        if len(tiles) >= count:
            break
    if not tiles:
        raise ValueError(f"no readable samples with src.png and tgt.png in {directory}")
    grid = _grid(tiles, columns, side)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {len(tiles)} pairs (source | target{', random draw, seed ' + str(seed) if shuffle else ''}) "
          f"to {out}")
    _report(problems)
    return str(out)


def _grid(tiles, columns, side):
    """Tiles of [key + turn] over [source | target] images, with the column labels on every tile."""
    gap = 4
    tile_w, tile_h = 2 * side + gap, side + 2 * LABEL_H
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (tile_w + 2 * gap), rows * (tile_h + 2 * gap)), (200, 200, 200))
    draw = ImageDraw.Draw(grid)
    for i, (key, meta, (source, target)) in enumerate(tiles):
        x, y = (i % columns) * (tile_w + 2 * gap) + gap, (i // columns) * (tile_h + 2 * gap) + gap
        src, tgt = meta.get("src") or {}, meta.get("tgt") or {}
        turn = ""
        if isinstance(src, dict) and isinstance(tgt, dict) and "azimuth_deg" in src and "azimuth_deg" in tgt:
            turn = f"  az {src['azimuth_deg']:.0f}->{tgt['azimuth_deg']:.0f}"
        draw.text((x, y), key[: max(8, side // 6 * 2 - len(turn) // 2)] + turn, fill=(0, 0, 0))
        draw.text((x, y + LABEL_H), "source", fill=(0, 0, 140))
        draw.text((x + side + gap, y + LABEL_H), "target", fill=(140, 0, 0))
        grid.paste(source, (x, y + 2 * LABEL_H))
        grid.paste(target, (x + side + gap, y + 2 * LABEL_H))
    return grid
