"""Photos people have -> inputs that look like the training data: object mask, crop, square, framing, background.

One entry point, `prepare_photo(image, ...) -> (prepared PIL image, info)`, shared by `sample` and the web page.
The mask comes from the image's alpha when it has some transparency, else from a mask file, else from a classical
separation that needs no downloaded weights: the photo's edges are background, and what differs from both their
colours and their smooth trend is the object. bench/photo_prep.py measured it against scikit-image's Felzenszwalb
segments and OpenCV's GrabCut (docs/sample_evaluate.md).
"""
import io

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from datasets.images import background_rgb, composite, load_image

# Object fill of the training framing: its bounding box's longest side over the image side. Measured by
# measure_fill() over 320 procedural renders (`render procedural --count 40 --seed 5`): mean 0.538 (10-90%: 0.46-0.63)
# with the primitive clusters the shipped model was trained on; 0.563 (0.48-0.63) with today's assemblies.
TRAINING_FILL = 0.54
WORK_SIDE = 256          # the separation runs on a copy this size (longest side): fast, and masks are smooth anyway
MIN_COVER = 0.02         # a mask covering less of the photo than this is probably not the object
BORDER_COLOURS = 8       # clusters of border pixels that model the background's colours
MAX_PREP_SIDE = 512      # side of the prepared image (the model resizes it to its own size)


def has_transparency(img: Image.Image) -> bool:
    """True when the image carries an alpha channel that is not fully opaque everywhere."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        return ImageOps.exif_transpose(img).convert("RGBA").getchannel("A").getextrema()[0] < 255
    return False


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab of an HxWx3 uint8 array (distances in Lab follow perceived colour differences)."""
    from skimage.color import rgb2lab
    return rgb2lab(rgb.astype(np.float32) / 255.0)


def _kmeans(points: np.ndarray, k: int, iters: int = 10, seed: int = 0) -> np.ndarray:
    """Cluster centres of points [N, C] (plain Lloyd iterations; N is a few thousand border pixels)."""
    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), size=min(k, len(points)), replace=False)]
    for _ in range(iters):
        nearest = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        centres = np.stack([points[nearest == j].mean(0) if np.any(nearest == j) else centres[j]
                            for j in range(len(centres))])
    return centres


def _smooth_fit(lab: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """The background each pixel would have if it varied smoothly (a quadratic in x, y) like the border does."""
    h, w = edge.shape
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], -1)
    coef, *_ = np.linalg.lstsq(basis[edge], lab[edge], rcond=None)
    return basis @ coef


def border_mask(rgb: np.ndarray) -> np.ndarray:
    """Foreground [H, W] bool of a photo whose edges show background. A pixel is background when its colour is
    near one of the border's colours and near the smooth trend of the border (a gradient or a lit wall); the
    distance to each is normalised by its spread along the border; the object is what stands out of either, in
    blobs of at least a tenth of the largest one (objects come in parts), holes filled."""
    from scipy import ndimage
    from skimage.filters import gaussian, threshold_otsu

    lab = _lab(gaussian(rgb, sigma=1.0, channel_axis=-1, preserve_range=True).astype(np.uint8))
    h, w = rgb.shape[:2]
    band = max(2, round(0.03 * min(h, w)))
    edge = np.zeros((h, w), bool)
    edge[:band], edge[-band:], edge[:, :band], edge[:, -band:] = True, True, True, True
    centres = _kmeans(lab[edge].reshape(-1, 3), BORDER_COLOURS)
    smooth = max(1.0, min(h, w) / 128)    # so that texture does not read as object
    near_colour = gaussian(np.sqrt(((lab[:, :, None] - centres[None, None]) ** 2).sum(-1).min(-1)), sigma=smooth)
    near_trend = gaussian(np.sqrt(((lab - _smooth_fit(lab, edge)) ** 2).sum(-1)), sigma=smooth)
    dist = np.maximum(near_colour / max(np.percentile(near_colour[edge], 99), 1.0),
                      near_trend / max(np.percentile(near_trend[edge], 99), 1.0))
    # threshold: Otsu on the whole image, but never inside the spread of the border's own distances
    fg = dist > max(threshold_otsu(dist), 1.0)
    fg = ndimage.binary_opening(fg, iterations=max(1, min(h, w) // 128))
    labels, n = ndimage.label(fg)
    if n == 0:
        return fg
    sizes = ndimage.sum(fg, labels, range(1, n + 1))
    keep = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max()))   # objects come in parts
    return ndimage.binary_fill_holes(keep)


def separate(rgb_img: Image.Image) -> np.ndarray:
    """Foreground mask (bool, the image's size) of an opaque photo, computed on a WORK_SIDE copy."""
    w, h = rgb_img.size
    scale = min(1.0, WORK_SIDE / max(w, h))
    small = rgb_img.resize((max(8, round(w * scale)), max(8, round(h * scale))), Image.Resampling.LANCZOS) \
        if scale < 1 else rgb_img
    mask = border_mask(np.asarray(small, np.uint8))
    up = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(up) > 127


def read_mask(mask, size) -> np.ndarray:
    """A mask file (or image): white/opaque = object; resized to `size` (w, h) if needed."""
    img = load_image(mask) if isinstance(mask, (str, bytes, bytearray)) or hasattr(mask, "__fspath__") else mask
    img = ImageOps.exif_transpose(img)
    grey = img.getchannel("A") if img.mode in ("RGBA", "LA") and img.getchannel("A").getextrema()[0] < 255 \
        else img.convert("L")
    if grey.size != tuple(size):
        grey = grey.resize(tuple(size), Image.Resampling.BILINEAR)
    return np.asarray(grey) > 127


def frame_object(rgb: Image.Image, alpha: Image.Image, background="white", fill=TRAINING_FILL) -> Image.Image:
    """Crop to the mask's box, centre it on a square of the background whose side makes the box fill `fill`."""
    box = alpha.point(lambda v: 255 if v > 127 else 0).getbbox()
    if box is None:
        box = (0, 0, rgb.width, rgb.height)
    x0, y0, x1, y1 = box
    longest = max(x1 - x0, y1 - y0)
    side = max(1, round(longest / fill))
    out_side = min(side, MAX_PREP_SIDE)
    scale = out_side / side
    obj = rgb.crop(box)
    obj_alpha = alpha.crop(box)
    size = (max(1, round(obj.width * scale)), max(1, round(obj.height * scale)))
    if size != obj.size:
        obj, obj_alpha = obj.resize(size, Image.Resampling.LANCZOS), obj_alpha.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (out_side, out_side), background_rgb(background))
    canvas.paste(obj, ((out_side - size[0]) // 2, (out_side - size[1]) // 2), obj_alpha)
    return canvas


def prepare_photo(image, background="white", mask=None, fill=TRAINING_FILL):
    """Any photo -> (an RGB square in the training framing on `background`, info dict).

    image: a path, bytes or PIL image. mask: optional mask file/image (white = object); ignored when the image has
    transparency of its own. info: {"mask": "alpha" | "mask file" | "separated", "cover": fraction of the photo the
    object covers, "touches_border": bool, "warnings": [one-line strings]}.
    """
    img = load_image(image) if not isinstance(image, Image.Image) else image
    img = ImageOps.exif_transpose(img)
    if has_transparency(img):
        alpha, source = img.convert("RGBA").getchannel("A"), "alpha"
        rgb = composite(img, background)
        fg = np.asarray(alpha) > 127
    else:
        rgb = composite(img, background)
        if mask is not None:
            fg, source = read_mask(mask, rgb.size), "mask file"
        else:
            fg, source = separate(rgb), "separated"
        # a slightly soft edge, as the renders' antialiased silhouettes have
        alpha = Image.fromarray(fg.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(0.6))
    cover = float(fg.mean())
    touches = bool(fg[0].any() or fg[-1].any() or fg[:, 0].any() or fg[:, -1].any())
    warnings = []
    if cover < MIN_COVER:
        warnings.append(f"the object found covers only {100 * cover:.1f}% of the photo: the separation is probably "
                        f"wrong (pass --mask FILE, or --no-prep)")
    elif touches and source == "separated":
        warnings.append("the object found touches the photo's border: the separation may have cut it or kept "
                        "background (pass --mask FILE, or --no-prep)")
    prepared = frame_object(rgb, alpha, background, fill) if cover > 0 else rgb
    return prepared, {"mask": source, "cover": round(cover, 4), "touches_border": touches, "warnings": warnings}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (two empty masks count as 1)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def measure_fill(spec, limit=400) -> dict:
    """Framing of rendered views in shards: mean and 10/90th percentile of (bbox longest side / image side)."""
    import itertools

    from datasets.stream import _image_field, _raw_samples, resolve_shards
    fills = []
    for sample, _ in itertools.islice(_raw_samples(resolve_shards(spec), "all", 0.0), limit):
        for name in ("src", "tgt"):
            a = np.asarray(Image.open(io.BytesIO(_image_field(sample, name))).convert("RGBA"))[..., 3] > 127
            ys, xs = np.nonzero(a)
            if len(ys):
                fills.append(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / a.shape[0])
    if not fills:
        raise ValueError(f"no views with an alpha mask in {spec}")
    return {"mean": float(np.mean(fills)), "p10": float(np.percentile(fills, 10)),
            "p90": float(np.percentile(fills, 90)), "views": len(fills)}
