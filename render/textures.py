"""Materials for the procedural objects: plausible palettes (wood, metal, plastic, ...) and image-like textures."""
import colorsys
import functools

import numpy as np
from PIL import Image

SIDE = 64   # texture pixels: our renders are 32-128 px, and pyrender uploads every texture per object
BANK = 32   # patterns of each kind made once per process and reused in new colours (making one costs ~1 ms)

# Material families: (hue range, saturation range, value range) in HSV, and the patterns that suit them.
PALETTES = {
    "wood": ((0.05, 0.11), (0.45, 0.75), (0.35, 0.8), ("wood", "wood", "noise")),
    "metal": ((0.0, 1.0), (0.0, 0.12), (0.45, 0.85), ("brushed", "noise")),
    "plastic": ((0.0, 1.0), (0.55, 0.95), (0.6, 0.95), ("stripes", "checks", "dots")),
    "ceramic": ((0.0, 1.0), (0.0, 0.25), (0.8, 0.97), ("marble", "stripes", "dots")),
    "fabric": ((0.0, 1.0), (0.2, 0.55), (0.3, 0.75), ("checks", "noise", "stripes")),
    "stone": ((0.05, 0.15), (0.0, 0.2), (0.35, 0.75), ("marble", "noise")),
    "paint": ((0.0, 1.0), (0.4, 0.9), (0.4, 0.95), ("stripes", "label", "checks")),
}


def pick_palette(rng, families=None):
    """A palette name, from `families` or from all of them."""
    names = list(families or PALETTES)
    return names[rng.integers(len(names))]


def colour(rng, palette, shift=0.0):
    """One RGBA colour (0..255 ints, sRGB) drawn from a palette; `shift` turns the hue (for a second colour)."""
    (h0, h1), (s0, s1), (v0, v1), _ = PALETTES[palette]
    h = (rng.uniform(h0, h1) + shift) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(s0, s1), rng.uniform(v0, v1))
    return [int(255 * r), int(255 * g), int(255 * b), 255]


def _noise(rng, cells, side=SIDE):
    """Smooth value noise in 0..1: a random `cells` x `cells` grid, bilinearly upsampled, tiling."""
    grid = rng.random((cells, cells))
    t = np.arange(side) * cells / side
    i0 = t.astype(int)
    f = t - i0
    f = f * f * (3 - 2 * f)
    i1 = (i0 + 1) % cells
    rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]
    return rows[:, i0] * (1 - f)[None] + rows[:, i1] * f[None]


def _turbulence(rng, side=SIDE):
    """Several octaves of value noise, 0..1."""
    total = sum(_noise(rng, c, side) / (k + 1) for k, c in enumerate((4, 8, 16)))
    return (total - total.min()) / max(np.ptp(total), 1e-9)


def pattern(rng, kind, side=SIDE):
    """A 0..1 mask of `kind`: wood, brushed, noise, marble, stripes, checks, dots, label."""
    y, x = np.mgrid[:side, :side] / side
    if kind == "wood":   # rings round an axis off the texture, warped by noise
        return (np.sin((np.hypot(x - rng.uniform(-1, 2), y * 0.15) * rng.uniform(25, 60)
                        + 6 * _turbulence(rng, side))) + 1) / 2
    if kind == "brushed":
        return np.clip(0.5 + 0.5 * (_noise(rng, 64, side).mean(0, keepdims=True) - 0.5) * 3 + 0 * x, 0, 1)
    if kind == "noise":
        return _turbulence(rng, side)
    if kind == "marble":
        return np.abs(np.sin((x * rng.uniform(3, 8) + y * rng.uniform(0, 4)) * np.pi
                             + 5 * _turbulence(rng, side))) ** 0.5
    if kind == "stripes":
        period = rng.uniform(0.08, 0.3)
        slant = rng.choice([0.0, 0.0, 1.0])
        return (((y + slant * x) / period) % 1.0 < rng.uniform(0.3, 0.6)).astype(float)
    if kind == "checks":
        n = rng.integers(3, 9)
        return ((np.floor(x * n) + np.floor(y * n)) % 2).astype(float)
    if kind == "dots":
        n = rng.integers(3, 7)
        return (np.hypot((x * n) % 1 - 0.5, (y * n) % 1 - 0.5) < rng.uniform(0.15, 0.35)).astype(float)
    if kind == "label":   # a printed band on part of the way round: a title bar, lines of "text", a round logo
        mask = np.zeros((side, side))
        top, bottom = rng.uniform(0.15, 0.35), rng.uniform(0.65, 0.85)
        start = rng.uniform(0, 0.4)
        band = (y > top) & (y < bottom) & (x > start) & (x < start + rng.uniform(0.4, 0.6))
        mask[band] = 0.25
        mask[band & (y < top + 0.1)] = 1.0
        for k in range(rng.integers(2, 5)):
            row = top + 0.16 + 0.09 * k
            words = ((x * rng.uniform(6, 14) + rng.uniform(0, 1)) % 1.0) < 0.75
            mask[(np.abs(y - row) < 0.02) & words & (x > start + 0.04) & (x < start + rng.uniform(0.2, 0.3))
                 & band] = 1.0
        cx, cy = start + rng.uniform(0.25, 0.32), (top + bottom) / 2
        mask[np.hypot(x - cx, y - cy) < 0.09] = 0.7
        return mask
    raise ValueError(f"unknown pattern {kind!r}")


@functools.lru_cache(maxsize=None)
def _banked(kind, variant, side=SIDE):
    """Pattern `variant` of `kind`: deterministic (its own seed), so objects stay the same in any process."""
    return pattern(np.random.default_rng([sorted(PATTERNS).index(kind), variant]), kind, side)[..., None]


PATTERNS = ("wood", "brushed", "noise", "marble", "stripes", "checks", "dots", "label")


def texture_image(rng, palette, kind=None, side=SIDE):
    """An RGB PIL image: two colours of `palette` mixed by a pattern that suits it (or by `kind`)."""
    kinds = PALETTES[palette][3]
    kind = kind or kinds[rng.integers(len(kinds))]
    mask = _banked(kind, int(rng.integers(BANK)), side)
    if rng.random() < 0.5:   # mirrored or turned: four looks per banked pattern
        mask = mask[::-1] if rng.random() < 0.5 else mask.transpose(1, 0, 2)
    base = np.array(colour(rng, palette)[:3], dtype=np.float64)
    if kind in ("wood", "brushed", "noise", "marble"):   # the same material, darker and lighter
        other = base * rng.uniform(0.45, 0.75) if kind != "marble" else np.minimum(base * 0.5 + 30, 255)
    else:                                                  # print: a contrasting colour
        other = np.array(colour(rng, "paint", shift=rng.uniform(0.3, 0.7))[:3], dtype=np.float64)
    if kind == "label":   # body colour, light paper, and print in a contrasting ink (logo a third colour)
        paper = np.array(colour(rng, "ceramic")[:3], dtype=np.float64)
        logo = np.array(colour(rng, "plastic")[:3], dtype=np.float64)
        layers = [(mask > 0.1, paper), (np.isclose(mask, 0.7), logo), (mask > 0.9, other * 0.6)]
        pixels = np.broadcast_to(base, mask.shape[:2] + (3,)).copy()
        for where, value in layers:
            pixels[where[..., 0]] = value
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    pixels = base * (1 - mask) + other * mask
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
