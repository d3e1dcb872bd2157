"""Image preparation shared by training, sampling and evaluation: decode, composite, pad, resize, scale."""
import io

import numpy as np
import torch
from PIL import Image, ImageOps

# Largest input accepted, in pixels (width x height): a 48-megapixel phone photo passes; a 10000x10000 upload
# (0.3 GB as 8-bit RGB, more while it is converted) is refused before it is decoded. Inputs are shrunk to the
# model's 32-64 px anyway.
MAX_INPUT_PIXELS = 50_000_000
NAMED_BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}


def background_rgb(name) -> tuple:
    """Turn a background name (white, black, grey) or an "r,g,b" string or tuple into an (r, g, b) tuple of ints."""
    if isinstance(name, (tuple, list)):
        parts = list(name)
    elif str(name).strip().lower() in NAMED_BACKGROUNDS:
        return NAMED_BACKGROUNDS[str(name).strip().lower()]
    else:
        parts = str(name).split(",")
    try:
        rgb = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"unknown background {name!r}: use white, black, grey or r,g,b with values 0-255")
    return rgb


def load_image(path) -> Image.Image:
    """Open and fully decode an image file (or bytes); a corrupt, unreadable or too large (MAX_INPUT_PIXELS) input
    raises ValueError."""
    name = "<bytes>" if isinstance(path, (bytes, bytearray)) else path
    unreadable = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
    try:
        img = Image.open(io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else path)   # the header only
    except unreadable as e:
        raise ValueError(f"cannot read image: {name}") from e
    width, height = img.size
    if width * height > MAX_INPUT_PIXELS:
        raise ValueError(f"image too large: {name} is {width}x{height} pixels, more than the "
                         f"{MAX_INPUT_PIXELS / 1e6:.0f} megapixels accepted; shrink it first")
    try:
        img.load()  # decode now, so a truncated file fails here rather than later
    except unreadable as e:
        raise ValueError(f"cannot read image: {name}") from e
    return img


def composite(img: Image.Image, background="white") -> Image.Image:
    """Flatten any mode (RGBA, LA, P with transparency, grayscale, CMYK, 16-bit) onto an opaque RGB background."""
    img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
    if img.mode == "P" and "transparency" in img.info or img.mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    elif img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        img = _to_8bit_gray(img)
    if img.mode == "RGBA":
        base = Image.new("RGB", img.size, background_rgb(background))
        base.paste(img, mask=img.getchannel("A"))
        return base
    return img.convert("RGB")


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """Scale a 16-bit or float grayscale image to 8 bits (PIL's convert would clip it instead)."""
    a = np.asarray(img, dtype=np.float64)
    top = 65535.0 if img.mode.startswith("I") and a.max() > 255 else (1.0 if img.mode == "F" and a.max() <= 1 else 255.0)
    return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def pad_to_square(img: Image.Image, background="white") -> Image.Image:
    """Centre an RGB image on a square canvas of the background colour (no cropping: the whole object stays)."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), background_rgb(background))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def to_tensor(img: Image.Image, size: int, background="white") -> torch.Tensor:
    """Prepare any image for the model: composite, pad to square, resize to size x size, scale to [-1, 1]; [3, size, size]."""
    img = pad_to_square(composite(img, background), background)
    if img.size != (size, size):
        # BICUBIC for enlarging; LANCZOS (with its wider anti-aliasing support) when shrinking
        resample = Image.Resampling.LANCZOS if img.size[0] > size else Image.Resampling.BICUBIC
        img = img.resize((size, size), resample)
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_pil(t: torch.Tensor) -> Image.Image:
    """Turn a [3, H, W] tensor in [-1, 1] back into an RGB image (values outside the range are clipped)."""
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] tensor, got shape {tuple(t.shape)}")
    array = ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")
