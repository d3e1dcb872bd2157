"""MVC (Multi-View Clothing) photos -> one condition/target pair per item, with the dataset's metadata if given."""
import json
import os
import re
from pathlib import Path

from render.repack import REPACK_DEFAULTS, RepackTask, check_size, existing_dir, listing, photo_json, photo_view, run_repack

# <styleId>-<view>-4x.jpg, the file names of the Zappos URLs MVC lists; views are p, 1, 2, 3, 4, 5, 7
MVC_NAME = re.compile(r"^(?P<style>.+)-(?P<view>[A-Za-z0-9]+)-4x\.jpe?g$", re.IGNORECASE)
# record fields that may hold the style id of the file names (tried in order; the first that names an item wins)
ID_FIELDS = ("styleId", "style_id", "style", "id", "itemId", "item_id", "productId", "itemN")


def find_mvc_images(root):
    """{style id: {view: path}} for every `<styleId>-<view>-4x.jpg` under `root` (recursive), and the skip counts."""
    items, duplicates, other = {}, 0, 0
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            match = MVC_NAME.match(name)
            if not match:
                other += 1
                continue
            views = items.setdefault(match["style"], {})
            view = match["view"].lower()
            if view in views:   # MVC lists many images twice; the first path in sorted order is kept
                duplicates += 1
                continue
            views[view] = Path(folder) / name
    return items, duplicates, other


def _style_of_name(text):
    """The style id in a file name or URL like `.../7001-1-4x.jpg`, else None."""
    match = MVC_NAME.match(str(text).split("?")[0].rsplit("/", 1)[-1])
    return match["style"] if match else None


def _record_style(record, styles):
    """The found style a metadata record describes: an id field, or a field holding an image name or URL."""
    candidates = [str(record[f]) for f in ID_FIELDS if f in record and not isinstance(record[f], (dict, list))]
    candidates += [s for v in record.values() if isinstance(v, str) and (s := _style_of_name(v))]
    return next((c for c in candidates if c in styles), None)


def load_metadata(path, styles):
    """{style id: attributes} from an MVC-like metadata JSON: a list of records, or an object keyed by id.

    Records may describe items or single images (MVC's mvc_info.json has one per image); an item's attributes are
    the fields on which all its records agree, so per-view fields (viewId, image URLs) drop out.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"metadata file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"metadata file {path} is not valid JSON: {e}") from None
    if isinstance(data, dict):
        pairs = []
        for key, value in data.items():
            record = value if isinstance(value, dict) else {"value": value}
            style = _style_of_name(key) or str(key)
            pairs.append((style if style in styles else _record_style(record, styles), record))
    elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
        pairs = [(_record_style(record, styles), record) for record in data]
    else:
        raise ValueError(f"metadata file {path} must hold a list of objects or an object keyed by item id")
    grouped = {}
    for style, record in pairs:
        if style is not None:
            grouped.setdefault(style, []).append(record)
    if pairs and not grouped:
        raise ValueError(f"none of the {len(pairs)} records in {path} names an item found in the image folder "
                         f"(looked for {', '.join(ID_FIELDS)} or a <styleId>-<view>-4x.jpg name in a field)")
    return {style: {k: v for k, v in records[0].items() if all(r.get(k, object()) == v for r in records[1:])}
            for style, records in grouped.items()}


def repack_mvc(root, out, cond_view=REPACK_DEFAULTS["cond_view"], target_view=REPACK_DEFAULTS["target_view"],
               size=REPACK_DEFAULTS["size"], metadata=None, delta_deg=REPACK_DEFAULTS["delta_deg"], workers=None,
               shard_size=REPACK_DEFAULTS["shard_size"]):
    """Pair each MVC item's condition view with its target view and write the pairs as shards in `out`."""
    check_size(size)
    root = existing_dir(root, "MVC folder")
    cond_view, target_view = str(cond_view).lower(), str(target_view).lower()
    if cond_view == target_view:
        raise ValueError(f"--cond-view and --target-view must differ, both are {cond_view}")
    items, duplicates, other = find_mvc_images(root)
    if not items:
        raise ValueError(f"no MVC images (<styleId>-<view>-4x.jpg) under {root}")
    complete = sorted(s for s, views in items.items() if cond_view in views and target_view in views)
    if not complete:
        found = sorted({v for views in items.values() for v in views})
        raise ValueError(f"no item under {root} has both view {cond_view} and view {target_view} "
                         f"(views found: {', '.join(found)})")
    lacking = sorted(set(items) - set(complete))
    attributes = load_metadata(metadata, set(items)) if metadata else {}
    tasks = []
    for style in complete:
        src, tgt = items[style][cond_view], items[style][target_view]
        extra = {"delta_azimuth_nominal": True, "path": str(src.parent)}
        if metadata:
            extra["meta"] = attributes.get(style)
        meta = photo_json(style, "mvc", 0, size, delta_deg, photo_view(view=cond_view, file=src.name),
                          photo_view(view=target_view, file=tgt.name), **extra)
        tasks.append(RepackTask(style, [src, tgt], [(0, 1, meta)]))
    notes = [f"{len(lacking)} items lacking view {cond_view} or {target_view}"
             + (f": {listing(lacking)}" if lacking else "")]
    if duplicates or other:
        notes.append(f"{duplicates} duplicate and {other} other files ignored")
    if metadata:
        notes.append(f"metadata for {sum(s in attributes for s in complete)} of {len(complete)} items")
    job = {"source": "mvc", "size": size, "cond_view": cond_view, "target_view": target_view,
           "delta_azimuth_deg": delta_deg}
    summary = run_repack(tasks, out, size, job, workers, shard_size, "repack mvc", notes)
    summary["lacking_view"] = lacking
    return summary
