"""Images/s of `repack mvc` on MVC-size (1920x2240) JPEGs at 64 and 256 px: decode+fit alone, and whole runs."""
import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from render.repack_mvc import repack_mvc  # noqa: E402
from render.repack import fit_square  # noqa: E402

import webdataset  # noqa: E402,F401  - imported once here (it imports torch), so no run pays for it


def make_photo(rng, width=1920, height=2240):
    """A garment-like photo: a textured, shaded blob on white, JPEG-compressed about as much as MVC's."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    inside = ((x - width / 2) / (width * 0.35)) ** 2 + ((y - height / 2) / (height * 0.42)) ** 2 < 1
    colour = rng.integers(40, 220, 3).astype(np.float32)
    shade = 0.75 + 0.25 * np.sin(x / 37.0 + rng.random() * 6) * np.cos(y / 53.0)
    pixels = np.where(inside[..., None], colour * shade[..., None], 255.0)
    pixels += rng.normal(0, 3, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def fit_without_draft(path, size):
    """The same fit, decoding at full resolution: what draft mode saves."""
    with Image.open(path) as image:
        image = image.convert("RGB")
    scale = size / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def rate(fn, paths, size):
    """Images per second of `fn(path, size)` over `paths`."""
    started = time.perf_counter()
    for path in paths:
        fn(path, size)
    return len(paths) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=24, help="MVC items (two 1920x2240 JPEGs each: views 1, 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes of the parallel run")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "MVC"
        root.mkdir()
        photos = [make_photo(rng) for _ in range(8)]   # making photos is slower than repacking them: reuse a few
        for i in range(args.items):
            for j, view in enumerate(("1", "3")):
                photos[(2 * i + j) % len(photos)].save(root / f"{5000 + i}-{view}-4x.jpg", quality=90)
        paths = sorted(root.glob("*.jpg"))
        mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(f"{len(paths)} JPEGs of 1920x2240, {mean_kb:.0f} KB on average; {os.cpu_count()} CPU cores\n")
        print(f"{'size':>5} | {'what':<44} | {'images/s':>8}")
        print("-" * 64)
        for size in (64, 256):
            rows = [("decode + fit, full-size decode (1 process)", rate(fit_without_draft, paths, size)),
                    ("decode + fit, JPEG draft mode (1 process)", rate(fit_square, paths, size))]
            for workers in sorted({1, args.workers}):
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    summary = repack_mvc(root, Path(tmp) / f"out{size}-{workers}", size=size, workers=workers)
                rows.append((f"repack mvc, PNG + shards ({workers} worker{'s' * (workers > 1)})",
                             summary["images_per_s"]))
            for what, value in rows:
                print(f"{size:>5} | {what:<44} | {value:>8.1f}")


if __name__ == "__main__":
    main()
