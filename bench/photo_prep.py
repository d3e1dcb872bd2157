"""Photo separation benchmark: mask IoU of each classical method on synthetic photos whose true mask is known.

A synthetic photo = a rendered view (RGBA, from shards) scaled, placed off-centre with a soft contact shadow on a
non-square background: a vertical gradient, a textured (multi-scale noise) wall, a wall-and-table scene with wood
grain, or a busy tiled floor; then blurred slightly and given sensor noise, as a phone photo would be.

Run: .venv/bin/python bench/photo_prep.py --data data/proc [--photos 40] [--grabcut] [--figure out.png]
--grabcut also scores OpenCV's GrabCut: opencv-python-headless is no dependency; install it aside, e.g.
`pip install --target /tmp/cv2 opencv-python-headless`, and run with PYTHONPATH=/tmp/cv2.
--figure draws the README's before/after picture: photos through `sample` with and without preparation.
"""
import argparse
import io
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.stream import _image_field, _raw_samples, resolve_shards  # noqa: E402
from datasets.photos import border_mask, mask_iou, prepare_photo  # noqa: E402

KINDS = ("gradient", "texture", "table", "tiles")


def smooth_noise(rng, h, w, scales=(4, 16, 64)):
    """Multi-scale value noise in [0, 1], [h, w]."""
    out = np.zeros((h, w))
    for s in scales:
        small = rng.random((max(2, h // s), max(2, w // s)))
        out += np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                          float) / 255 / len(scales)
    return out


def background(kind, rng, h, w):
    """An HxWx3 uint8 background of the given kind."""
    c1, c2 = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
    y = np.linspace(0, 1, h)[:, None, None]
    x = np.linspace(0, 1, w)[None, :, None]
    if kind == "gradient":
        img = c1 * (1 - y) + c2 * y + 0 * x
    elif kind == "texture":
        n = smooth_noise(rng, h, w)[..., None]
        img = c1 * (1 - n) + c2 * n
    elif kind == "table":
        horizon = int(h * rng.uniform(0.45, 0.65))
        wall = c1 * (0.85 + 0.15 * (1 - y)) + 0 * x
        grain = np.sin(np.linspace(0, rng.uniform(20, 60), w)[None, :] + 3 * smooth_noise(rng, h, w, (8, 32)))
        wood = np.array([150, 100, 60]) * (0.8 + 0.15 * grain[..., None]) * (rng.uniform(0.7, 1.3))
        img = np.where((np.arange(h) >= horizon)[:, None, None], wood, wall)
    else:  # tiles
        t = int(rng.integers(12, 30))
        checker = ((np.arange(h)[:, None] // t + np.arange(w)[None, :] // t) % 2)[..., None]
        img = c1 * checker + c2 * (1 - checker) + 25 * (smooth_noise(rng, h, w)[..., None] - 0.5)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_photo(rgba, kind, rng, h=240, w=320):
    """(photo HxWx3 uint8, true mask HxW bool): `rgba` scaled to 35-65% of the height, off-centre, with a shadow."""
    obj = Image.fromarray(rgba, "RGBA")
    box = obj.getchannel("A").getbbox()
    obj = obj.crop(box)
    target = rng.uniform(0.35, 0.65) * h
    scale = target / max(obj.size)
    obj = obj.resize((max(1, round(obj.width * scale)), max(1, round(obj.height * scale))), Image.Resampling.LANCZOS)
    x = int(rng.integers(int(0.1 * w), int(0.9 * w - obj.width)))
    yy = int(rng.integers(int(0.1 * h), int(0.9 * h - obj.height)))
    photo = Image.fromarray(background(kind, rng, h, w))
    shadow = Image.new("L", (w, h), 0)
    sx, sy = x + obj.width // 2, yy + obj.height
    half_w, half_h = obj.width // 2, max(3, obj.height // 12)
    shadow.paste(90, (sx - half_w, sy - half_h, sx + half_w, sy + half_h))
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(2, obj.height / 15)))
    photo = Image.composite(Image.new("RGB", (w, h), (0, 0, 0)), photo, shadow)
    photo.paste(obj, (x, yy), obj)
    mask = np.zeros((h, w), bool)
    mask[yy:yy + obj.height, x:x + obj.width] = np.asarray(obj.getchannel("A")) > 127
    photo = photo.filter(ImageFilter.GaussianBlur(0.7))
    noisy = np.asarray(photo, float) + rng.normal(0, 3, (h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), mask


def grabcut_mask(rgb: np.ndarray, init: np.ndarray | None = None, iters: int = 5) -> np.ndarray:
    """OpenCV's GrabCut seeded by the border (or refining an initial mask): the alternative the shipped method beat."""
    import cv2
    h, w = rgb.shape[:2]
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if init is None:
        m = max(2, round(0.03 * min(h, w)))
        mask = np.zeros((h, w), np.uint8)
        cv2.grabCut(bgr, mask, (m, m, w - 2 * m, h - 2 * m), bgd, fgd, iters, cv2.GC_INIT_WITH_RECT)
    else:
        mask = np.where(init, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        cv2.grabCut(bgr, mask, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def felzenszwalb_mask(rgb):
    """scikit-image Felzenszwalb segments; those touching the border are background (the other classical idea)."""
    from scipy import ndimage
    from skimage.segmentation import felzenszwalb
    seg = felzenszwalb(rgb, scale=200, sigma=0.8, min_size=50)
    border = np.unique(np.concatenate([seg[0], seg[-1], seg[:, 0], seg[:, -1]]))
    return ndimage.binary_fill_holes(~np.isin(seg, border))


def renders(spec, count, seed):
    """`count` RGBA views from the shards (every other sample, src and tgt alternating)."""
    out = []
    for i, (sample, _) in enumerate(itertools.islice(_raw_samples(resolve_shards(spec), "all", 0.0), 2 * count)):
        if i % 2 == 0:
            png = _image_field(sample, "src" if i % 4 else "tgt")
            out.append(np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")))
    return out[:count]


def figure(path, views, rng, checkpoint=None, side=160):
    """Rows of: photo | model input and turned view without preparation | prepared input and turned view."""
    import tempfile

    from PIL import ImageDraw

    from train.grid import label_font
    from train.sample import sample
    labels = ("photo", "--no-prep: input", "--no-prep: turned", "prepared input", "turned view")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (rgba, kind) in enumerate(views):
            photo, _ = synthetic_photo(rgba, kind, rng, h=360, w=480)
            name = Path(tmp) / f"photo{i}.png"
            Image.fromarray(photo).save(name)
            cells = [Image.fromarray(photo).resize((round(side * 4 / 3), side), Image.Resampling.LANCZOS)]
            for prep in (False, True):
                out = Path(tmp) / f"{prep}"
                sample(checkpoint, [name], out, prep=prep, display_size=side)
                cells += [Image.open(out / f"photo{i}_{what}_{side}px.png") for what in ("input", "turned")]
            rows.append(cells)
    widths = [c.width for c in rows[0]]
    canvas = Image.new("RGB", (sum(widths) + 6 * len(widths), 22 + len(rows) * (side + 6)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 3
    for label, w in zip(labels, widths):
        draw.text((x + w // 2, 11), label, fill=(0, 0, 0), font=label_font(), anchor="mm")
        x += w + 6
    for r, cells in enumerate(rows):
        x = 3
        for c in cells:
            canvas.paste(c, (x, 22 + r * (side + 6)))
            x += c.width + 6
    canvas.save(path)
    print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="Shards of rendered objects (RGBA views).")
    p.add_argument("--photos", type=int, default=40, help="Synthetic photos (cycling through the background kinds).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grabcut", action="store_true", help="Also score OpenCV GrabCut (border-seeded and refined).")
    p.add_argument("--figure", default=None, help="Also draw the before/after picture (shipped model) to this PNG.")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.figure:
        views = renders(args.data, 8, args.seed)
        figure(args.figure, [(views[k], kind) for k, kind in zip((1, 3, 6), ("table", "gradient", "texture"))], rng)
        return
    methods = {"border colours + trend (shipped)": border_mask, "felzenszwalb segments": felzenszwalb_mask}
    if args.grabcut:
        methods["grabcut, border rect"] = grabcut_mask
        methods["grabcut from border colours"] = lambda rgb: grabcut_mask(rgb, init=border_mask(rgb))
    scores = {m: {k: [] for k in KINDS} for m in methods}
    seconds = {m: 0.0 for m in methods}
    warned = 0
    for i, rgba in enumerate(renders(args.data, args.photos, args.seed)):
        kind = KINDS[i % len(KINDS)]
        photo, truth = synthetic_photo(rgba, kind, rng)
        for name, fn in methods.items():
            t = time.perf_counter()
            scores[name][kind].append(mask_iou(fn(photo), truth))
            seconds[name] += time.perf_counter() - t
        warned += bool(prepare_photo(Image.fromarray(photo))[1]["warnings"])
    n = sum(len(v) for v in scores[next(iter(methods))].values())
    print(f"mask IoU on {n} synthetic photos (320x240, {', '.join(KINDS)} backgrounds), seed {args.seed}")
    print(f"{'method':34} " + " ".join(f"{k:>9}" for k in KINDS) + f" {'all':>7} {'ms/photo':>9}")
    for name in methods:
        per = [np.mean(scores[name][k]) for k in KINDS]
        every = np.mean([s for k in KINDS for s in scores[name][k]])
        print(f"{name:34} " + " ".join(f"{v:9.3f}" for v in per) + f" {every:7.3f} {1000 * seconds[name] / n:9.1f}")
    print(f"prepare_photo warned on {warned}/{n} photos")


if __name__ == "__main__":
    main()
