"""Sample grids for watching a run: one row per pair, condition | generated | target."""
import os

import torch
from PIL import Image

from datasets.images import to_pil

GAP = 2  # white pixels between images


def save_grid(path: str, cond: torch.Tensor, generated: torch.Tensor, target: torch.Tensor) -> str:
    """Write a PNG grid of rows (cond, generated, target) from [B, 3, H, W] tensors in [-1, 1]; atomic."""
    B, _, H, W = cond.shape
    grid = Image.new("RGB", (3 * W + 4 * GAP, B * H + (B + 1) * GAP), (255, 255, 255))
    for row in range(B):
        for col, images in enumerate((cond, generated, target)):
            grid.paste(to_pil(images[row]), (GAP + col * (W + GAP), GAP + row * (H + GAP)))
    tmp = f"{path}.tmp.png"
    grid.save(tmp)
    os.replace(tmp, path)
    return path
