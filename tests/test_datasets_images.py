"""Image preparation: any mode, size and aspect becomes a [3, S, S] tensor in [-1, 1] on the chosen background."""
import numpy as np
import pytest
import torch
from PIL import Image

from datasets.images import background_rgb, load_image, to_pil, to_tensor


def test_rgba_odd_size_is_centred_padded_and_composited():
    a = np.zeros((90, 70, 4), np.uint8)
    a[20:70, 15:55] = (200, 40, 40, 255)  # opaque red box, transparent elsewhere
    t = to_tensor(Image.fromarray(a, "RGBA"), 32)
    assert t.shape == (3, 32, 32) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert torch.allclose(t[:, 0, 0], torch.ones(3))  # padding and transparency are white
    centre = t[:, 16, 16]
    assert centre[0] > 0.4 and centre[1] < -0.4  # red stays red
    k = to_tensor(Image.fromarray(a, "RGBA"), 32, background="black")
    assert torch.allclose(k[:, 0, 0], -torch.ones(3))


def test_half_transparent_pixels_blend_with_background():
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 3] = 128  # black at half opacity over white: mid grey
    t = to_tensor(Image.fromarray(a, "RGBA"), 8)
    assert abs(float(t.mean())) < 0.02


def test_grayscale_la_palette_and_16bit_become_rgb():
    gray = to_tensor(Image.fromarray(np.full((50, 80), 128, np.uint8)), 16)
    assert gray.shape == (3, 16, 16) and torch.allclose(gray[:, 8, 8], torch.full((3,), 128 / 127.5 - 1), atol=1e-6)
    la = Image.fromarray(np.zeros((10, 10, 2), np.uint8), "LA")  # fully transparent
    assert torch.allclose(to_tensor(la, 10, "black"), -torch.ones(3, 10, 10))
    p = Image.new("P", (10, 10), 0)
    p.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    p.info["transparency"] = 0  # palette index 0 transparent
    assert torch.allclose(to_tensor(p, 10, "black"), -torch.ones(3, 10, 10))
    deep = Image.fromarray(np.full((10, 10), 65535, np.uint16))
    assert torch.allclose(to_tensor(deep, 10), torch.ones(3, 10, 10))


def test_padding_keeps_wide_images_centred():
    a = np.full((10, 40, 3), 0, np.uint8)  # a black 40x10 strip
    t = to_tensor(Image.fromarray(a), 40)
    assert torch.allclose(t[:, 0, 20], torch.ones(3)) and torch.allclose(t[:, 20, 20], -torch.ones(3))
    assert torch.allclose(t[:, 39, 20], torch.ones(3))


def test_round_trip_and_load_errors(tmp_path):
    t = torch.rand(3, 12, 12) * 2 - 1
    img = to_pil(t)
    assert img.size == (12, 12) and img.mode == "RGB"
    assert (to_tensor(img, 12) - t).abs().max() <= 1 / 127.5 + 1e-6
    img.save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").size == (12, 12)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match="cannot read image: .*broken.png"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError):
        to_pil(torch.zeros(1, 4, 4))


def test_background_names():
    assert background_rgb("white") == (255, 255, 255) and background_rgb("Black") == (0, 0, 0)
    assert background_rgb("grey") == (128, 128, 128) and background_rgb("10, 20,30") == (10, 20, 30)
    assert background_rgb((1, 2, 3)) == (1, 2, 3)
    for bad in ("pink", "1,2", "0,0,300"):
        with pytest.raises(ValueError, match="unknown background"):
            background_rgb(bad)
