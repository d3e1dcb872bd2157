"""Read a shard folder: counts for `shards info`, a source|target grid for `shards preview`."""
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw

from render.shards import FAILURES, read_jsonl


def _shard_paths(directory):
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory} does not exist")
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a folder")
    return sorted(directory.glob("*.tar"))


def _samples(paths, with_images=True):
    """Yield (key, {field: bytes}) from tar shards in order, reading only what is asked for."""
    for path in paths:
        with tarfile.open(path) as tar:
            key, fields = None, {}
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                member_key, _, field = name.partition(".")
                if member_key != key and key is not None:
                    yield key, fields
                    fields = {}
                key = member_key
                if field == "json" or (with_images and field.endswith("png")):
                    fields[field] = tar.extractfile(member).read()
            if key is not None:
                yield key, fields


def shards_info(directory, as_json=False):
    """Count objects, samples, shards, bytes and failures in `directory`; print them and return the dict."""
    paths = _shard_paths(directory)
    objects, sources, sizes = set(), Counter(), Counter()
    samples = 0
    for key, fields in _samples(paths, with_images=False):
        samples += 1
        meta = json.loads(fields["json"]) if "json" in fields else {}
        objects.add(meta.get("uid", key.rsplit("_", 1)[0]))
        sources[meta.get("source", "?")] += 1
        sizes[meta.get("size", "?")] += 1
    failures = read_jsonl(Path(directory) / FAILURES)
    reasons = Counter(str(f.get("reason", "?")).split(":")[0] for f in failures)
    info = {"directory": str(directory), "shards": len(paths), "objects": len(objects), "samples": samples,
            "bytes": sum(p.stat().st_size for p in paths), "failures": len(failures),
            "failure_reasons": dict(reasons), "sources": dict(sources), "sizes": {str(k): v for k, v in sizes.items()},
            "unfinished_shards": len(list(Path(directory).glob("*.tar.tmp")))}
    if as_json:
        print(json.dumps(info))
    else:
        print(f"{info['directory']}: {info['shards']} shards, {info['objects']} objects, {info['samples']} samples, "
              f"{info['bytes'] / 1e6:.1f} MB, {info['failures']} failures")
        for name in ("sources", "sizes", "failure_reasons"):
            if info[name]:
                print(f"  {name.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in info[name].items()))
        if info["unfinished_shards"]:
            print(f"  {info['unfinished_shards']} unfinished shard(s) (*.tar.tmp): a job is running or was killed")
    return info


def _on_white(png_bytes, side):
    """Decode a PNG, composite it on white, scale to `side` pixels."""
    image = Image.open(io.BytesIO(png_bytes)).convert("RGBA")
    canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(canvas, image).convert("RGB").resize((side, side), Image.NEAREST)


def shards_preview(directory, out, count=16, columns=4, side=128):
    """Draw the first `count` pairs as source|target tiles with their key and azimuths; write PNG to `out`."""
    paths = _shard_paths(directory)
    pairs = []
    for key, fields in _samples(paths):
        if "src.png" in fields and "tgt.png" in fields:
            pairs.append((key, fields))
        if len(pairs) >= count:
            break
    if not pairs:
        raise ValueError(f"no samples with src.png and tgt.png in {directory}")
    label = 14
    tile_w, tile_h = 2 * side + 4, side + label
    rows = (len(pairs) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (tile_w + 8), rows * (tile_h + 8)), (200, 200, 200))
    draw = ImageDraw.Draw(grid)
    for i, (key, fields) in enumerate(pairs):
        x, y = (i % columns) * (tile_w + 8) + 4, (i // columns) * (tile_h + 8) + 4
        grid.paste(_on_white(fields["src.png"], side), (x, y + label))
        grid.paste(_on_white(fields["tgt.png"], side), (x + side + 4, y + label))
        meta = json.loads(fields.get("json", b"{}"))
        angles = ""
        if meta.get("src") and meta.get("tgt"):
            angles = f" {meta['src'].get('azimuth_deg', 0):.0f}->{meta['tgt'].get('azimuth_deg', 0):.0f}"
        draw.text((x, y), (key[:28] + angles), fill=(0, 0, 0))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {len(pairs)} pairs (source | target) to {out}")
    return str(out)
